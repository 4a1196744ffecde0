"""The real single-node Slurm of ``slurm/`` for the tests (see slurm/start.sh).

:func:`ensure_cluster` starts it once per machine (under a file lock, as
pytest-xdist workers ask for it at the same time) or uses the one that is
up; it is left running for the next test session: ``slurm/stop.sh`` stops it.
A cluster that cannot start fails the tests: nothing is skipped.
"""
from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = "/tmp/pyteleport-slurm-start.lock"


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
        for script in ("install.sh", "start.sh"):
            proc = subprocess.run(["bash", str(ROOT / "slurm" / script)], capture_output=True,
                                  text=True, timeout=300)
            if proc.returncode != 0:
                raise RuntimeError(f"slurm/{script} failed (exit {proc.returncode}):\n"
                                   f"{proc.stdout}\n{proc.stderr}")
    if not _idle():
        raise RuntimeError("the local Slurm started but its node is not idle: see "
                           "/var/lib/pyteleport-slurm/*.log")


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True).stdout


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
