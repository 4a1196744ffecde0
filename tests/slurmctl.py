"""The real single-node Slurm of ``slurm/`` for the tests (see slurm/start.sh).

:func:`ensure_cluster` starts it once per machine (under a file lock, as
pytest-xdist workers ask for it at the same time) or uses the one that is
up.  A cluster that cannot start fails the tests: nothing is skipped.

Who stops it: a cluster that was up before the tests (``.ci/run`` starts one
before nox, a developer's own) is never stopped by them.  One the tests
started is marked (:data:`STARTED`); every test session (the controller of a
pytest-xdist run, not its workers) registers itself (:func:`register_session`)
and, as it ends, leaves (:func:`release_session`): the last session to leave
stops a marked cluster with ``slurm/stop.sh``.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = "/tmp/pyteleport-slurm-start.lock"
# the tests' bookkeeping: STARTED exists while a cluster the tests started is
# up; SESSIONS holds a file per running test session ("pid start-time")
STATE = Path("/tmp/pyteleport-slurm-tests")
STARTED = STATE / "started"
SESSIONS = STATE / "sessions"


def _idle() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-n", "localhost", "-o", "%t"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return out.strip().startswith(("idle", "mix", "alloc"))


def ensure_cluster() -> None:
    """Make sure the local cluster is up and its node usable; raise RuntimeError with why not."""
    if _idle():
        return
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _idle():
            return
        STATE.mkdir(exist_ok=True)
        STARTED.write_text(f"{os.getpid()}\n")    # before start.sh: a half-started one is ours too
        for script in ("install.sh", "start.sh"):
            proc = subprocess.run(["bash", str(ROOT / "slurm" / script)], capture_output=True,
                                  text=True, timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"slurm/{script} failed (exit {proc.returncode}):\n"
                                   f"{proc.stdout}\n{proc.stderr}")
    if not _idle():
        raise RuntimeError("the local Slurm started but its node is not idle: see "
                           "/var/lib/pyteleport-slurm/*.log")


def _started_at(pid: int):
    """The start time of process ``pid`` (tells a reused pid), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def register_session() -> None:
    """This process is a test session that may use the cluster (see the module doc)."""
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        SESSIONS.mkdir(parents=True, exist_ok=True)
        (SESSIONS / str(os.getpid())).write_text(f"{os.getpid()} {_started_at(os.getpid())}\n")


def release_session() -> str:
    """This test session ends: the last one stops the cluster if the tests
    started it.  What was done, for the session's summary ("" if nothing)."""
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        mine = SESSIONS / str(os.getpid())
        try:
            mine.unlink()
        except FileNotFoundError:
            return ""
        others = []
        for entry in SESSIONS.iterdir():
            pid, _, started = entry.read_text().strip().partition(" ")
            if pid.isdigit() and _started_at(int(pid)) == started:
                others.append(pid)
            else:
                entry.unlink()        # a session that died without leaving
        if not STARTED.exists():
            return ""
        if others:
            return f"the local Slurm the tests started stays up for test session(s) {', '.join(others)}"
        proc = subprocess.run(["bash", str(ROOT / "slurm" / "stop.sh")], capture_output=True,
                              text=True, timeout=120)
        STARTED.unlink()
        if proc.returncode != 0:
            return f"slurm/stop.sh failed (exit {proc.returncode}): {proc.stdout}{proc.stderr}"
        return "stopped the local Slurm the tests had started (slurm/stop.sh)"


def jobs_under(directory) -> list:
    """Ids of the jobs in the queue (pending, running, completing) whose
    working directory is ``directory`` or below it: a test's own jobs."""
    out = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True,
                         timeout=30).stdout
    root = str(directory).rstrip("/") + "/"
    return [job for job, _, workdir in (line.strip().partition(" ") for line in out.splitlines())
            if job and (workdir.rstrip("/") + "/").startswith(root)]


def cancel_jobs_under(directory, timeout: float = 30.0) -> list:
    """Cancel the jobs :func:`jobs_under` lists and wait until they have
    left the queue (or ``timeout``); the ids that were cancelled."""
    import time
    jobs = jobs_under(directory)
    if not jobs:
        return []
    subprocess.run(["scancel", *jobs], capture_output=True, timeout=30)
    deadline = time.monotonic() + timeout
    while jobs_under(directory) and time.monotonic() < deadline:
        time.sleep(0.1)
    return jobs


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout


def never_issued_job_id() -> str:
    """A job id this controller never gives a job (one above ``MaxJobId``:
    ids run from ``FirstJobId`` up to it, then wrap), checked to be unknown
    to ``scontrol``: the test stand-in for a job Slurm has forgotten."""
    config = sh("scontrol", "show", "config")
    max_id = int(next(line.split("=", 1)[1] for line in config.splitlines()
                      if line.split("=", 1)[0].strip() == "MaxJobId"))
    job_id = str(max_id + 1)
    proc = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0 and "Invalid job id" in proc.stderr, (job_id, proc.stdout, proc.stderr)
    return job_id


def wait_job_done(job_id: str, timeout: float = 60.0) -> dict:
    """Fields of ``scontrol show job`` once the job has ended."""
    import time
    terminal = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
    deadline = time.monotonic() + timeout
    while True:
        out = sh("scontrol", "show", "job", "-o", job_id)
        fields = dict(tok.partition("=")[::2] for tok in out.split() if "=" in tok)
        if fields.get("JobState") in terminal or time.monotonic() > deadline:
            return fields
        time.sleep(0.2)
