"""The source side of the ``mpirun`` backend's handoff: the stage directory.

A private directory (mode 0700) holds what the ranks need and what they
report:

* ``payload``: the program, written once (mode 0600), read by every rank
  (or, for :func:`pyteleport.mpi.teleport`, one payload per rank and a
  manifest: an MPI checkpoint directory, see ``pyteleport.mpi._dir``);
* ``status.<rank>``: each rank's verdict (the restore entry's status line);
  ``status.pid<pid>`` for a process that could not tell its rank;
* ``ready``: a FIFO the source holds open and waits on; each rank writes a
  byte once its verdict is written, so that the source wakes at once;
* ``go``: a FIFO the source holds open.  Once every rank has confirmed, the
  source writes one byte per rank and closes it (commit); to give up it
  closes it without writing, and the ranks exit without running anything.

The directory is removed as soon as the handoff is decided either way.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Dict, Optional, Tuple

from ... import _log
from ..._errors import TeleportError
from ..._progress import Progress
from ..._core.restore import parse_status
from ...mpi._rank import GO, READY


PREFIX = "pyteleport-mpi-"


def make_dir() -> str:
    """A new private stage folder ``pyteleport-mpi-<pid>-<random>`` in the
    temporary folder, once the stages of sources that died (killed before
    they could remove theirs) are reaped."""
    reap_stale()
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")


def reap_stale() -> None:
    """Remove this user's stage folders whose source process is gone."""
    base = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(base) if n.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        parts = name[len(PREFIX):].split("-")
        pid = parts[0]
        if len(parts) < 2 or not pid.isdigit():      # another naming: not ours to judge
            continue
        try:
            os.kill(int(pid), 0)
            continue                 # its source is alive
        except ProcessLookupError:
            pass
        except OSError:
            continue
        path = os.path.join(base, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid == os.geteuid() and st.st_mode & 0o170000 == 0o040000:
            _log.debug("mpirun backend: removing the stage %s of a source that died", path)
            shutil.rmtree(path, ignore_errors=True)


class Stage:
    """The stage directory of one move to ``n`` ranks."""

    def __init__(self, n: int, what: str, path: Optional[str] = None):
        self.n = n
        self.what = what
        # mode 0700; or a private directory the caller made (pyteleport.mpi.teleport)
        self.path = path or make_dir()
        self.go_fd: Optional[int] = None
        self.ready_fd: Optional[int] = None
        try:
            os.mkfifo(os.path.join(self.path, "go"), 0o600)
            # read-write: opening never blocks, and the ranks' reads block
            # until the verdict instead of seeing an early end of file
            self.go_fd = os.open(os.path.join(self.path, "go"), os.O_RDWR)
            os.mkfifo(os.path.join(self.path, READY), 0o600)
            self.ready_fd = os.open(os.path.join(self.path, READY), os.O_RDWR | os.O_NONBLOCK)
        except OSError as e:
            self._close_fds()
            self.remove()
            raise TeleportError(f"{what}: cannot prepare the stage directory {self.path}: {e}") from None

    def write_payload(self, payload) -> None:
        path = os.path.join(self.path, "payload")
        progress = Progress(payload.size, "teleport")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with open(fd, "wb") as out:
                payload.write_to(out, progress, sign=True)   # a file: signed (see README)
        except (OSError, TeleportError) as e:
            raise TeleportError(f"{self.what}: cannot write the payload into {self.path}: {e}") from None
        finally:
            progress.close()

    def statuses(self) -> Dict[str, Tuple[bool, str]]:
        """Complete verdicts so far, by status file suffix (rank or ``pid…``)."""
        found = {}
        for name in os.listdir(self.path):
            if not name.startswith("status."):
                continue
            try:
                with open(os.path.join(self.path, name), "rb") as f:
                    line = f.read().decode("utf-8", "replace")
            except OSError:
                continue
            if not line.endswith("\n"):
                continue    # still being written
            verdict = parse_status(line)
            found[name[len("status."):]] = verdict if verdict is not None else (False, line.strip())
        return found

    def wait_verdict(self, proc: subprocess.Popen, timeout: float) -> None:
        """Return once every rank confirmed; raise :class:`TeleportError` at
        the first refusal, if the launcher ends first, or after ``timeout``."""
        import select
        deadline = time.monotonic() + timeout
        pause = 0.001
        while True:
            code = proc.poll()
            found = self.statuses()
            failed = sorted((key, reason) for key, (ok, reason) in found.items() if not ok)
            if failed:
                key, reason = failed[0]
                who = f"rank {key}" if key.isdigit() else "a rank"
                raise TeleportError(f"{self.what}: {who} could not resume the program: {reason}")
            if len(found) >= self.n:
                return
            if code is not None:
                raise TeleportError(
                    f"{self.what}: the launcher exited with code {code} before every rank confirmed "
                    f"the move ({len(found)} of {self.n} did)")
            if time.monotonic() > deadline:
                raise TeleportError(
                    f"{self.what}: {self.n - len(found)} of {self.n} ranks did not confirm the move "
                    f"within {timeout:g} s (they are stopped; raise handoff_timeout or "
                    "PYTELEPORT_HANDOFF_TIMEOUT if starting and rebuilding takes longer)")
            # woken by a rank's byte on the ready FIFO; the pause bounds how
            # late a refusal or the launcher's end is seen
            if select.select([self.ready_fd], [], [], pause)[0]:
                try:
                    os.read(self.ready_fd, 4096)
                except BlockingIOError:
                    pass
            pause = min(pause * 2, 0.05)

    def commit(self) -> None:
        """Let every rank run the program."""
        os.write(self.go_fd, GO * self.n)   # n bytes < PIPE_BUF: one atomic write
        self._close_fds()

    def abort(self) -> None:
        """Tell every rank, present or still starting, to exit."""
        self._close_fds()

    def _close_fds(self) -> None:
        for name in ("go_fd", "ready_fd"):
            fd = getattr(self, name)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
