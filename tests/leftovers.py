"""Processes a test session leaves behind (see conftest.py).

A process belongs to the session when it carries the session's token in its
environment (:data:`TOKEN`: set in the controller before the pytest-xdist
workers start, so that everything the tests start inherits it: local
children, daemons such as sshd, Slurm jobs' processes, as ``sbatch`` exports
the environment) or runs in, or names, the session's temporary folder (a
program started over ssh, whose environment sshd makes afresh).
"""
from __future__ import annotations

import os
import signal
import time
from typing import List, Optional, Tuple

TOKEN = "PYTELEPORT_TEST_SESSION"


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def _stat(pid: int) -> Optional[Tuple[int, str]]:
    data = _read(f"/proc/{pid}/stat")
    if data is None:
        return None
    fields = data.rsplit(b")", 1)[1].split()
    return int(fields[1]), fields[19].decode()


def _belongs(pid: int, token: str, basetemp: str) -> bool:
    environ = _read(f"/proc/{pid}/environ") or b""
    if f"{TOKEN}={token}".encode() in environ.split(b"\0"):
        return True
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        cwd = ""
    if (cwd + "/").startswith(basetemp + "/"):
        return True
    cmdline = (_read(f"/proc/{pid}/cmdline") or b"").replace(b"\0", b" ") + b" "
    return any(basetemp.encode() + end in cmdline for end in (b"/", b" "))


WORKERS = "/tmp/pyteleport-test-workers"


def register_worker(token: str) -> None:
    """In a pytest-xdist worker: this process is the session's, not a leftover."""
    folder = os.path.join(WORKERS, token)
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, str(os.getpid())), "w").close()


def _workers(token: str) -> set:
    try:
        return {int(n) for n in os.listdir(os.path.join(WORKERS, token)) if n.isdigit()}
    except OSError:
        return set()


def forget_workers(token: str) -> None:
    import shutil
    shutil.rmtree(os.path.join(WORKERS, token), ignore_errors=True)


def find(token: str, basetemp: str) -> List[Tuple[int, str, str]]:
    """``(pid, start time, command line)`` of the session's processes still
    running, other than this process and pytest-xdist's workers (on their
    way out)."""
    me = os.getpid()
    skip = _workers(token) | {me}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        pid = int(entry)
        stat = _stat(pid)
        if stat is None:
            continue
        if _read(f"/proc/{pid}/cmdline") == b"":
            continue      # a zombie, or a kernel thread
        if _belongs(pid, token, basetemp):
            cmd = (_read(f"/proc/{pid}/cmdline") or b"").replace(b"\0", b" ").decode(errors="replace")
            found.append((pid, stat[1], cmd.strip()))
    return found


def wait_gone(token: str, basetemp: str, timeout: float) -> List[Tuple[int, str, str]]:
    """The session's processes that are still there after ``timeout``
    seconds (processes on their way out, a job being cleaned up, get that
    long to end)."""
    deadline = time.monotonic() + timeout
    while True:
        left = find(token, basetemp)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def kill(processes: List[Tuple[int, str, str]]) -> None:
    """SIGKILL those still running (the same processes: start time checked)."""
    for pid, started, _ in processes:
        stat = _stat(pid)
        if stat is not None and stat[1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
