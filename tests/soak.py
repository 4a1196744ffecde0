"""Reliability soak: the MPI, Slurm and signal tests, many runs in a row,
under CPU load.

    python tests/soak.py [--runs 20] [--load 2] [--workers 2] [-- PYTEST ARGS]

(or ``python3 -m nox -s soak-3.11 -- --runs 20``; not a default session).
The load is ``stress-ng --cpu N`` when stress-ng is installed, else N Python
processes spinning; it is stopped at the end, whatever happens.  Each run is
a whole pytest session (its own leftover check, see conftest.py) over
:data:`FILES` with ``-n WORKERS``; the soak stops at the first failing run
(``--keep-going``: goes on) and exits non-zero if any failed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = ["test_mpi_migrate.py", "test_mpirun.py", "test_mpi_exit.py", "test_task_index.py",
         "test_slurm.py", "test_slurm_restart.py", "test_interrupt.py", "test_protect.py"]


def _spin() -> None:
    while True:
        pass


def start_load(n: int) -> list:
    if n <= 0:
        return []
    if shutil.which("stress-ng"):
        return [subprocess.Popen(["stress-ng", "--cpu", str(n), "--quiet"], start_new_session=True)]
    import multiprocessing
    procs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(n)]
    for p in procs:
        p.start()
    return procs


def stop_load(procs: list) -> None:
    for p in procs:
        if isinstance(p, subprocess.Popen):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except OSError:
                pass
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        else:
            p.terminate()
            p.join(10)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--load", type=int, default=os.cpu_count() or 2,
                        help="CPU hogs (default: one per core)")
    parser.add_argument("--workers", default="2", help="pytest-xdist workers per run")
    parser.add_argument("--keep-going", action="store_true")
    parser.add_argument("pytest_args", nargs="*", help="instead of the default test files")
    args = parser.parse_args(argv)
    tests = args.pytest_args or [str(HERE / f) for f in FILES]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", args.workers, *tests]
    print(f"soak: {args.runs} runs of: {' '.join(cmd)}\nsoak: load: "
          f"{'stress-ng --cpu %d' % args.load if shutil.which('stress-ng') else '%d spinning processes' % args.load}",
          flush=True)
    load = start_load(args.load)
    results = []
    started = time.monotonic()
    try:
        for run in range(1, args.runs + 1):
            t0 = time.monotonic()
            proc = subprocess.run(cmd, cwd=HERE.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
            elapsed = time.monotonic() - t0
            summary = (proc.stdout.strip().splitlines() or [""])[-1]
            results.append(proc.returncode == 0)
            print(f"soak: run {run}/{args.runs}: {'PASS' if proc.returncode == 0 else 'FAIL'} "
                  f"in {elapsed:.0f} s: {summary}", flush=True)
            if proc.returncode != 0:
                log = HERE.parent / f"soak-run-{run}.log"
                log.write_text(proc.stdout)
                print(f"soak: its output: {log}", flush=True)
                if not args.keep_going:
                    break
    finally:
        stop_load(load)
    total = time.monotonic() - started
    print(f"soak: {sum(results)} of {len(results)} runs passed ({args.runs} asked) in {total / 60:.1f} min",
          flush=True)
    return 0 if results and all(results) and len(results) == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
