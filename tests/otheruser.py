"""A second, real user for the trust tests: files it plants are really
another uid's (the tests run as root, which passes every permission check,
so "another user could write it" is made real by planting as this user)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

NAME = "ptl-other"


def other_user() -> tuple:
    """``(uid, gid)`` of the test's second user, created if missing (as root)."""
    try:
        entry = pwd.getpwnam(NAME)
    except KeyError:
        proc = subprocess.run(["useradd", "-M", "-r", "-s", "/usr/sbin/nologin", NAME],
                              capture_output=True, text=True)
        # exit 9: another test worker created it first
        assert proc.returncode in (0, 9), proc.stderr
        entry = pwd.getpwnam(NAME)
    assert entry.pw_uid != os.geteuid()
    return entry.pw_uid, entry.pw_gid


def as_other(*cmd, check: bool = True, data: bytes = b"") -> subprocess.CompletedProcess:
    """Run ``cmd`` (coreutils: the other user cannot reach this venv) as the
    other user, with ``data`` on its stdin."""
    uid, gid = other_user()
    proc = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *map(str, cmd)],
                          capture_output=True, input=data)
    if check:
        assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
    return proc


def plant(data: bytes, dest, mode: str = "666") -> None:
    """The other user writes ``data`` into a new file ``dest`` (mode ``mode``)."""
    as_other("sh", "-c", 'cat > "$1" && chmod "$2" "$1"', "sh", dest, mode, data=data)


def shared_dir() -> Path:
    """A new folder anyone can write to (a shared project or scratch folder), under /tmp."""
    path = Path(tempfile.mkdtemp(prefix="ptl-shared-", dir="/tmp"))
    os.chmod(path, 0o777)
    return path


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
