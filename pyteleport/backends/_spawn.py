"""Starting a child process with ``os.posix_spawn``, for the local backend.

``subprocess`` costs a move several milliseconds of imports (selectors,
threading, signal, locale, ...) for one call; the local backend needs only
to start an interpreter with two extra file descriptors, which posix_spawn
does directly.  :class:`Child` offers the part of ``subprocess.Popen`` that
backends use (``pid``, ``poll``, ``wait``, ``send_signal``, ``kill``).
"""
from __future__ import annotations

import os
import _signal as signal   # the C module: signal.py builds enums at import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Sequence

# Python ignores these at start-up; the child gets them back at their
# defaults (as subprocess's restore_signals does)
_RESTORED_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ")
                          if hasattr(signal, name))


class Child:
    """A started process, with the ``Popen`` methods backends use."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: Optional[int] = None

    def _set_status(self, status: int) -> int:
        # as Popen: the exit code, or minus the signal that ended it
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> Optional[int]:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                # reaped elsewhere (a SIGCHLD handler of the program): it has
                # ended, with a code nobody can tell now, and its pid may
                # already be another process's
                self.returncode = 255
                return self.returncode
            if pid == self.pid:
                self._set_status(status)
        return self.returncode

    def wait(self) -> int:
        while self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                # reaped elsewhere (a SIGCHLD handler of the program): unknown code
                self.returncode = 255
                break
            self._set_status(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        # never by pid once reaped (as Popen): the pid may be reused
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _inheritable_fds(keep: Sequence[int]) -> list:
    """Descriptors above 2 that a child would inherit, besides ``keep``
    (Popen's ``close_fds`` closes them; posix_spawn is told to)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return []
    out = []
    for name in names:
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                if os.get_inheritable(fd):
                    out.append(fd)
            except OSError:   # the listing's own descriptor, closed by now
                pass
    return out


def spawn(argv: Sequence[str], pass_fds: Sequence[int] = ()) -> Child:
    """Start ``argv`` (searched on ``PATH`` when it has no slash) with this
    process's environment, standard streams and ``pass_fds``; other
    descriptors are not inherited.  Raises OSError if it cannot start."""
    for fd in pass_fds:
        os.set_inheritable(fd, True)
    try:
        actions = [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds(pass_fds)]
        start = os.posix_spawn if os.sep in argv[0] else os.posix_spawnp
        pid = start(argv[0], list(argv), dict(os.environ), file_actions=actions,
                    setsigdef=_RESTORED_SIGNALS)
    finally:
        for fd in pass_fds:
            os.set_inheritable(fd, False)
    return Child(pid)
