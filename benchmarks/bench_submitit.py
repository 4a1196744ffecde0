#!/usr/bin/env python3
"""pyteleport beside submitit on the same Slurm, in the same run.

    pip install submitit "setuptools<81"     # submitit 1.5 imports pkg_resources
    python benchmarks/bench_submitit.py        # 5 rounds

Needs a running Slurm (the local one of ``slurm/``: ``bash slurm/start.sh``).
Each round runs, one after the other, with this interpreter:

* **submitit**: ``AutoExecutor(folder).submit(work, 1000).result()``, the
  whole script timed from outside (interpreter start to exit);
* **pyteleport**: the same ``work(1000)`` after
  ``teleport(backend="slurm", wait=True)``, timed the same way.

They do different things: submitit ships one function and brings its
result back to a caller that keeps running; pyteleport moves the rest of the
program, the source waiting for its end.  The figure is what a user waits
for the same small piece of work to run on a node.  Medians; no assertions.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SUBMITIT = """\
import submitit
def work(n):
    return sum(i * i for i in range(n))
executor = submitit.AutoExecutor(folder="submitit-logs")
executor.update_parameters(timeout_min=5)
print(executor.submit(work, 1000).result())
"""

PYTELEPORT = """\
import pyteleport
def work(n):
    return sum(i * i for i in range(n))
pyteleport.teleport(backend="slurm", time="5", wait=True)
print(work(1000))
"""


def _timed(source: str, folder: str) -> float:
    path = os.path.join(folder, "prog.py")
    with open(path, "w") as f:
        f.write(source)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, path], cwd=folder, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    if proc.returncode != 0 or proc.stdout.split()[-1:] != ["332833500"]:
        raise SystemExit(f"run failed:\n{proc.stdout}\n{proc.stderr}")
    return took


def main(rounds: int = 5) -> None:
    try:
        import submitit
    except ImportError as e:
        raise SystemExit(f"{e}: pip install submitit 'setuptools<81'")
    figures = {"submitit": [], "pyteleport": []}
    for _ in range(rounds):
        for name, source in (("submitit", SUBMITIT), ("pyteleport", PYTELEPORT)):
            with tempfile.TemporaryDirectory(dir=os.getcwd()) as folder:
                figures[name].append(_timed(source, folder))
    sub, tel = (statistics.median(figures[k]) for k in ("submitit", "pyteleport"))
    print(f"submitit {submitit.__version__}: submit + result of a small function: {sub:.2f} s (median of {rounds})")
    print(f"pyteleport: teleport + the same work + end of the job: {tel:.2f} s, {tel / sub:.2f}x submitit")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
