#!/usr/bin/env python3
"""The slurm backend's figures, each against a baseline from the same run.

    python benchmarks/bench_slurm.py           # 5 repeats, 1 GiB of state
    python benchmarks/bench_slurm.py --quick   # 3 repeats, 64 MiB

Needs the local cluster of ``slurm/`` (started if it is not up; root).
Runs with the interpreter running this script, this repository first on
``PYTHONPATH``.

1. **First line.**  A script calls ``teleport(backend="slurm", wait=True)``
   and prints ``time.time()`` right after; figure: from just before the call
   to that line.  Baseline: from just before ``sbatch --wrap "PYTHON -c
   'import time; print(time.time())'"`` to the time that job prints.  Goal:
   within 1.2x + 0.5 s of the baseline.  Each job is submitted once the
   previous one has left the queue (see ``_settle``).
2. **Snapshot and requeue.**  A job (``requeue=True``) holds a NumPy array of
   SIZE bytes in a busy loop; ``scancel --batch --signal=USR2``; figure: from
   the signal until the snapshot is in the stage directory and the job has
   been requeued.  Baseline: a job holding the same array writes it to the
   stage directory (with fsync).  Goal: under 1.3x the baseline.  The
   requeued job is cancelled.  Also shown: the same write by a process started
   here (not a job).  On this project's shared machine one such 1 GiB write
   takes anywhere from 0.5 to 4.6 s, in a job or not, so the figures are noisy
   even as medians.

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
sys.path.insert(0, os.path.join(REPO, "tests"))

FIRST_LINE = """\
import os, sys, time
import pyteleport
t0 = time.time()
pyteleport.teleport(backend="slurm", wait=True, stage_dir=sys.argv[1], output=sys.argv[1] + "/o-%j",
                    error=sys.argv[1] + "/e-%j", job_name=sys.argv[2])
print("T", t0, time.time(), flush=True)
"""

HOLDER = """\
import os, sys, time
import numpy as np
import pyteleport
pyteleport.teleport(backend="slurm", wait=False, requeue=True, grace=60, stage_dir=sys.argv[1],
                    output=sys.argv[1] + "/o-%j", error=sys.argv[1] + "/e-%j", job_name=sys.argv[3])
data = np.ones(int(sys.argv[2]), dtype=np.uint8)
print("ready", flush=True)
while True:
    for i in range(1000):
        pass
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


# this run's jobs; each figure starts once the previous job has left the
# queue: Slurm starts a job submitted while another one is completing on the
# node up to ~0.7 s later than on an idle node
JOB_NAME = f"bench-slurm-{os.getpid()}"


def _settle() -> None:
    while subprocess.run(["squeue", "-h", "--name", JOB_NAME, "-o", "%i"], capture_output=True,
                         text=True).stdout.strip():
        time.sleep(0.05)


def first_line(work: str) -> float:
    prog = os.path.join(work, "first.py")
    with open(prog, "w") as f:
        f.write(FIRST_LINE)
    _settle()
    out = subprocess.run([sys.executable, prog, work, JOB_NAME], capture_output=True, text=True,
                         env=_env(), cwd=work, check=True).stdout
    _, t0, t1 = out.split()
    return float(t1) - float(t0)


def sbatch_wrap(work: str) -> float:
    _settle()
    t0 = time.time()
    job = subprocess.run(["sbatch", "--parsable", f"--output={work}/w-%j", f"--job-name={JOB_NAME}",
                          "--wrap", f"{sys.executable} -c 'import time; print(time.time())'"],
                         capture_output=True, text=True, check=True, cwd=work).stdout.strip()
    path = os.path.join(work, f"w-{job}")
    while True:
        try:
            with open(path) as f:
                text = f.read()
            if text.endswith("\n"):
                return float(text) - t0
        except (OSError, ValueError):
            pass
        time.sleep(0.005)


def _job_fields(job: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True).stdout
    return dict(tok.partition("=")[::2] for tok in out.split() if "=" in tok)


def snapshot_requeue(work: str, size: int) -> float:
    prog = os.path.join(work, "holder.py")
    with open(prog, "w") as f:
        f.write(HOLDER)
    stage = tempfile.mkdtemp(dir=work)
    _settle()
    err = subprocess.run([sys.executable, prog, stage, str(size), JOB_NAME], capture_output=True, text=True,
                         env=_env(), cwd=work, check=True).stderr
    job = err.rsplit("submitted batch job", 1)[1].split()[0]
    out = os.path.join(stage, f"o-{job}")
    while not (os.path.exists(out) and "ready" in open(out).read()):
        time.sleep(0.01)
    [move] = [os.path.join(stage, n) for n in os.listdir(stage) if n.startswith("job-")]
    t0 = time.monotonic()
    subprocess.run(["scancel", "--batch", "--signal=USR2", job], check=True)
    # cheap polling while the job works (scontrol in a tight loop would take
    # a core from it), then ask Slurm until the requeue shows
    while not os.path.exists(os.path.join(move, "ckpt.0")):
        time.sleep(0.005)
    while _job_fields(job).get("Restarts") != "1":
        time.sleep(0.02)
    elapsed = time.monotonic() - t0
    subprocess.run(["scancel", job])
    return elapsed


WRITER = """\
import os, sys, time
import numpy as np
data = memoryview(np.ones(int(sys.argv[2]), dtype=np.uint8))
t0 = time.monotonic()
with open(sys.argv[1], "wb") as f:
    for start in range(0, len(data), 1 << 24):
        f.write(data[start:start + (1 << 24)])
    f.flush()
    os.fsync(f.fileno())
print(time.monotonic() - t0)
os.unlink(sys.argv[1])
"""


def _writer(work: str) -> str:
    prog = os.path.join(work, "writer.py")
    with open(prog, "w") as f:
        f.write(WRITER)
    return prog


def write_baseline(work: str, size: int) -> float:
    """A job like the snapshot's (holding SIZE bytes in a NumPy array) writes
    them to the stage directory with fsync; its own timing."""
    prog = _writer(work)
    _settle()
    job = subprocess.run(["sbatch", "--parsable", f"--output={work}/wb-%j", f"--job-name={JOB_NAME}",
                          "--wrap",
                          f"{sys.executable} {prog} {work}/blob {size}"],
                         capture_output=True, text=True, check=True, cwd=work).stdout.strip()
    out = os.path.join(work, f"wb-{job}")
    while True:
        fields = _job_fields(job)
        if fields.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED"):
            with open(out) as f:
                return float(f.read().split()[-1])
        time.sleep(0.1)


def write_here(work: str, size: int) -> float:
    """WRITER's write, run by a process started here (outside Slurm)."""
    prog = _writer(work)
    out = subprocess.run([sys.executable, prog, os.path.join(work, "blob-here"), str(size)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def _print_runs(**figures) -> None:
    """Every run, in seconds: the figures are noisy on a shared machine."""
    for label, runs in figures.items():
        print(f"  {label}: " + " ".join(f"{x:.2f}" for x in runs) + " s")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    repeats, size = (3, 64 << 20) if a.quick else (5, 1 << 30)
    from slurmctl import ensure_cluster
    ensure_cluster()
    with tempfile.TemporaryDirectory(prefix="bench-slurm-", dir=os.getcwd()) as work:
        fl, base = [], []
        for _ in range(repeats):
            fl.append(first_line(work))
            base.append(sbatch_wrap(work))
        f, b = statistics.median(fl), statistics.median(base)
        goal = 1.2 * b + 0.5
        print(f"first line after teleport(): {f * 1000:.0f} ms; sbatch --wrap python: {b * 1000:.0f} ms; "
              f"goal <= {goal * 1000:.0f} ms {'ok' if f <= goal else 'MISS'}")
        _print_runs(teleport=fl, sbatch_wrap=base)
        sn, wb, wh = [], [], []
        runs = [(sn, snapshot_requeue), (wb, write_baseline), (wh, write_here)]
        for i in range(repeats):
            for figures, measure in runs[i % 3:] + runs[:i % 3]:   # no figure always first
                figures.append(measure(work, size))
        s, w, h = statistics.median(sn), statistics.median(wb), statistics.median(wh)
        print(f"snapshot + requeue of {size >> 20} MiB: {s:.2f} s; a job writing {size >> 20} MiB "
              f"with fsync: {w:.2f} s; goal <= {1.3 * w:.2f} s {'ok' if s <= 1.3 * w else 'MISS'} "
              f"(the same write outside Slurm: {h:.2f} s)")
        _print_runs(snapshot_requeue=sn, job_write=wb, write_here=wh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
