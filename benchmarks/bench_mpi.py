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

**Checkpoint of an MPI job** (``pyteleport.mpi.checkpoint``).  4 ranks under
``mpirun``, each holding a NumPy array of SIZE bytes (256 MiB by default),
write a checkpoint directory (again and again into the same one, as a job
does); figure: from a barrier before the call to a barrier after it.
Baseline, in the same run and the same ranks: each rank writes
its array with ``numpy.save`` into the same folder, between the same barriers.  Goal: within
1.3x.  Like for like: ``checkpoint(sync=False)`` against ``numpy.save``
(neither forces the data to disk), and the default ``checkpoint()``, which
fsyncs every file before the manifest commits them, against ``numpy.save``
followed by ``fsync``.

**Checkpoint restart** (``mpirun -n 4 pyteleport resume DIR``).  From just
before starting the launcher to the last rank's first line after the
resumed call.  Goal: within 1.5x the bare launch + the load time.  Two
readings of "load time": reading the 4 rank files once, serially (what the
issue first measured: it leaves out importing NumPy, which the resumed
state needs and the bare launch does not do); and, like for like, what the
same launch takes more than the bare one when each rank loads its array
with ``numpy.load`` (importing NumPy and faulting the array in included).

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
CKPT = """\
import os, sys, time
import numpy as np
from mpi4py import MPI
import pyteleport.mpi

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
size, folder, repeats = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
state = np.random.default_rng(rank).random(size // 8)


def np_save(durable):
    with open(os.path.join(folder, f"np-{rank}.npy"), "wb") as f:
        np.save(f, state)
        if durable:
            f.flush()
            os.fsync(f.fileno())


def clean_start():
    # no dirty pages of an earlier part slow this one down
    if rank == 0:
        os.sync()
    comm.Barrier()
    return time.perf_counter()


for i in range(repeats):
    times = {}
    parts = ("np", "npsync", "ck", "cknosync")
    for part in (parts if i % 2 == 0 else parts[::-1]):
        t0 = clean_start()
        if part.startswith("ck"):
            resumed = pyteleport.mpi.checkpoint(os.path.join(folder, "ckpt"), sync=part == "ck")
            if resumed:
                comm.Barrier()
                os.write(1, b"T1 %r\\n" % time.time())
                sys.exit(0)
        else:
            np_save(part == "npsync")
        comm.Barrier()
        times[part] = time.perf_counter() - t0
    if rank == 0:
        print("NP", times["np"], "NPSYNC", times["npsync"], "CK", times["ck"], "CKNOSYNC",
              times["cknosync"], flush=True)
"""
BARE = "import os, time; from mpi4py import MPI; os.write(1, b'T1 %r\\n' % time.time())"
NPLOAD = ("import os, time; from mpi4py import MPI; import numpy; "
          "a = numpy.load('np-%d.npy' % MPI.COMM_WORLD.Get_rank()); os.write(1, b'T1 %r\\n' % time.time())")


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


def bare(launcher: str, code: str = BARE, cwd=None) -> float:
    t0 = time.time()
    out = subprocess.run([launcher, "-n", str(RANKS), sys.executable, "-c", code], env=_env(),
                         capture_output=True, text=True, check=True, cwd=cwd).stdout
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


def checkpoint(launcher: str, size: int, repeats: int, directory: str):
    """``[(numpy.save, numpy.save + fsync, checkpoint, checkpoint(sync=False))]``
    seconds, one per repeat; leaves ``directory/ckpt`` and the ``.npy`` files
    behind."""
    path = os.path.join(directory, "ckpt.py")
    with open(path, "w") as f:
        f.write(CKPT)
    out = subprocess.run([launcher, "-n", str(RANKS), sys.executable, path, str(size), directory,
                          str(repeats)], env=_env(), capture_output=True, text=True, check=True,
                         cwd=directory).stdout
    return [(float(w[1]), float(w[3]), float(w[5]), float(w[7]))
            for w in (line.split() for line in out.splitlines()) if w and w[0] == "NP"]


def restart(launcher: str, folder: str) -> float:
    t0 = time.time()
    out = subprocess.run([launcher, "-n", str(RANKS), sys.executable, "-m", "pyteleport", "resume",
                          folder], env=_env(), capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(folder)).stdout
    return _last(out, "T1") - t0


def read_files(paths) -> float:
    """Reading the files once each, serially."""
    t0 = time.perf_counter()
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
    return time.perf_counter() - t0


def bench_checkpoint(launcher: str, base: float, repeats: int, size: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as directory:
        runs = checkpoint(launcher, size, repeats, directory)
        np_save, np_sync, ckpt, nosync = (statistics.median(t[k] for t in runs) for k in range(4))
        mib = size >> 20
        for label, fig, ref, ref_label in (
                ("checkpoint(sync=False)", nosync, np_save, "numpy.save"),
                ("checkpoint()", ckpt, np_sync, "numpy.save + fsync"),
                ("checkpoint()", ckpt, np_save, "numpy.save")):
            print(f"{label}, {RANKS} ranks x {mib} MiB: {fig * 1000:.0f} ms; {ref_label} "
                  f"{ref * 1000:.0f} ms: {fig / ref:.2f}x (goal 1.3x) {'ok' if fig <= 1.3 * ref else 'MISS'}")
        folder = os.path.join(directory, "ckpt")
        fig = statistics.median(restart(launcher, folder) for _ in range(repeats))
        files = read_files([os.path.join(folder, n) for n in os.listdir(folder) if n.startswith("rank-")])
        npload = statistics.median(bare(launcher, code=NPLOAD, cwd=directory) for _ in range(repeats))
        for label, load in (("load = reading the files", files),
                            ("load = numpy.load launch - bare launch", npload - base)):
            goal = 1.5 * base + load
            print(f"checkpoint restart, {RANKS} ranks x {mib} MiB: {fig * 1000:.0f} ms (goal "
                  f"{goal * 1000:.0f} ms = 1.5 x {base * 1000:.0f} + {load * 1000:.0f}: {label}) "
                  f"{'ok' if fig <= goal else 'MISS'}")
        print(f"  the same launch loading each rank's array with numpy.load: {npload * 1000:.0f} ms "
              f"({fig / npload:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("fanout", "checkpoint"), help="run one part only")
    parser.add_argument("--size", type=int, default=256, help="MiB per rank for the checkpoint (256)")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    launcher = find_launcher(sys.executable)
    if launcher is None:
        sys.exit("bench_mpi: no mpirun/mpiexec (run .ci/install-mpi.sh)")
    print(f"Python {sys.version.split()[0]}, {launcher}, {RANKS} ranks on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as directory:
        base = statistics.median(bare(launcher) for _ in range(repeats))
        print(f"baseline: mpirun -n {RANKS} python -c 'from mpi4py import MPI': {base * 1000:.0f} ms")
        if args.only != "fanout":
            bench_checkpoint(launcher, base, repeats, args.size << 20)
        for size in (1 << 20, 64 << 20) if args.only != "checkpoint" else ():
            fig = statistics.median(moved(size, directory) for _ in range(repeats))
            load = load_time(size, directory)
            goal = 1.5 * base + load
            print(f"fan-out restart, {size >> 20} MiB of state: {fig * 1000:.0f} ms "
                  f"(goal {goal * 1000:.0f} ms = 1.5 x {base * 1000:.0f} + load {load * 1000:.0f}) "
                  f"{'ok' if fig <= goal else 'MISS'}")


if __name__ == "__main__":
    main()
