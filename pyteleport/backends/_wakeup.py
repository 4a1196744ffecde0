"""Blocking waits that never sit on a signal.

CPython runs a signal's Python handler only when the main thread is back in
the interpreter loop.  A signal that lands just before a blocking system call
(``waitpid``, ``poll``) is handled only when that call returns, which for a
source waiting on its target can be never: the signal it should forward is
stuck.  The C-level wakeup fd (:func:`signal.set_wakeup_fd`) is written by the
interrupt itself, so a wait that also watches it always wakes up in time for
the handler to run.
"""
from __future__ import annotations

import os
import select
import _signal as signal   # the C module: signal.py builds enums at import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional


class Wakeup:
    """A pipe the interpreter writes to on every signal, while in a ``with``."""

    def __enter__(self) -> "Wakeup":
        self.fd, self._w = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._w, False)
        self._previous = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        return self

    def drain(self) -> bytes:
        """The numbers of the signals received since the last call, one byte each."""
        got = b""
        try:
            while True:
                chunk = os.read(self.fd, 512)
                if not chunk:
                    break
                got += chunk
        except BlockingIOError:
            pass
        return got

    def __exit__(self, *exc) -> None:
        signal.set_wakeup_fd(self._previous)
        os.close(self.fd)
        os.close(self._w)


def wait_process(proc) -> int:
    """``proc.wait()`` (``proc`` a ``subprocess.Popen`` or a ``_spawn.Child``),
    with signal handlers running as soon as a signal arrives."""
    pidfd = _pidfd(proc.pid)
    try:
        with Wakeup() as wake:
            watched = [wake.fd] if pidfd is None else [wake.fd, pidfd]
            # without a pidfd (not Linux) the exit is noticed by polling
            timeout = None if pidfd is not None else 0.05
            while proc.poll() is None:
                select.select(watched, [], [], timeout)
                wake.drain()
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return proc.returncode


def _pidfd(pid: int) -> Optional[int]:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None
