#!/usr/bin/env python3
"""The mpirun backend's restart figure, against a baseline from the same run.

    python benchmarks/bench_mpi.py           # 5 repeats
    python benchmarks/bench_mpi.py --quick   # 3 repeats

Needs mpi4py and an MPI launcher (``.ci/install-mpi.sh``).  Runs with the
interpreter running this script, this repository first on ``PYTHONPATH``.

**Fan-out restart.**  A script holding SIZE bytes (a bytearray) notes
``time.time()`` and calls ``teleport(backend="mpirun", n=4)``; each rank does
``from mpi4py import MPI`` and prints ``time.time()``; figure: from the call
to the last rank's line.  Baseline: from just before starting
``mpirun -n 4 python -c "from mpi4py import MPI; ..."`` to its last rank's
line.  Goal: within 1.5x the baseline + the load time (reading SIZE bytes
once per rank, measured separately, serially: an upper bound).

Figures are medians.  No assertions; an unmet goal prints MISS.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pyteleport.backends.mpirun import find_launcher  # noqa: E402

RANKS = 4
ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
       "OMPI_MCA_rmaps_base_oversubscribe": "1"}

MOVED = """\
import sys, time

import pyteleport
state = bytearray({size})        # no numpy: the baseline does not import it either
print("T0", repr(time.time()), flush=True)
pyteleport.teleport(backend="mpirun", n={n})
from mpi4py import MPI
import os; os.write(1, b'T1 %r\\n' % time.time())
"""
BARE = "import os, time; from mpi4py import MPI; os.write(1, b'T1 %r\\n' % time.time())"


def _env() -> dict:
    env = dict(os.environ, **ENV)
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _last(stdout: str, tag: str) -> float:
    return max(float(line.split()[1]) for line in stdout.splitlines() if line.startswith(tag))


def moved(size: int, directory: str) -> float:
    path = os.path.join(directory, "moved.py")
    with open(path, "w") as f:
        f.write(MOVED.format(size=size, n=RANKS))
    out = subprocess.run([sys.executable, path], env=_env(), capture_output=True, text=True,
                         check=True, cwd=directory).stdout
    return _last(out, "T1") - _last(out, "T0")


def bare(launcher: str) -> float:
    t0 = time.time()
    out = subprocess.run([launcher, "-n", str(RANKS), sys.executable, "-c", BARE], env=_env(),
                         capture_output=True, text=True, check=True).stdout
    return _last(out, "T1") - t0


def load_time(size: int, directory: str) -> float:
    """Reading SIZE bytes from a fresh file, once per rank, serially."""
    path = os.path.join(directory, "blob")
    with open(path, "wb") as f:
        f.write(os.urandom(1 << 20) * (size >> 20))
    t0 = time.perf_counter()
    for _ in range(RANKS):
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    os.unlink(path)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    launcher = find_launcher(sys.executable)
    if launcher is None:
        sys.exit("bench_mpi: no mpirun/mpiexec (run .ci/install-mpi.sh)")
    print(f"Python {sys.version.split()[0]}, {launcher}, {RANKS} ranks on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as directory:
        base = statistics.median(bare(launcher) for _ in range(repeats))
        print(f"baseline: mpirun -n {RANKS} python -c 'from mpi4py import MPI': {base * 1000:.0f} ms")
        for size in (1 << 20, 64 << 20):
            fig = statistics.median(moved(size, directory) for _ in range(repeats))
            load = load_time(size, directory)
            goal = 1.5 * base + load
            print(f"fan-out restart, {size >> 20} MiB of state: {fig * 1000:.0f} ms "
                  f"(goal {goal * 1000:.0f} ms = 1.5 x {base * 1000:.0f} + load {load * 1000:.0f}) "
                  f"{'ok' if fig <= goal else 'MISS'}")


if __name__ == "__main__":
    main()
