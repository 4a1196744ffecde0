"""The source's end of a shell command's standard streams, without deadlocks.

:class:`Channel` writes to the command's stdin without blocking and keeps
reading its stdout and stderr meanwhile, so neither side can stall the other
whatever the target prints while a large payload is on its way.
"""
from __future__ import annotations

import os
import select
import subprocess
import time
from typing import Optional

READ_SIZE = 1 << 16


class ChannelTimeout(Exception):
    """The command neither answered nor took input within the time allowed."""


def grow_pipe(fd: int, size: int = 1 << 20) -> None:
    """Enlarge a pipe's buffer (fewer wake-ups for large transfers); best effort."""
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (OSError, ValueError, ImportError):
        pass


class Channel:
    """stdin, stdout and stderr of ``proc`` (pipes, unbuffered).

    ``stall_timeout``: seconds a :meth:`write` may wait for room in stdin
    before it raises :class:`ChannelTimeout` (None: no limit).
    """

    def __init__(self, proc: subprocess.Popen, stall_timeout: Optional[float] = None):
        self.proc = proc
        self.stall_timeout = stall_timeout
        self.inp: Optional[int] = proc.stdin.fileno()
        self.out = proc.stdout.fileno()
        self.err = proc.stderr.fileno()
        os.set_blocking(self.inp, False)
        grow_pipe(self.inp)
        self.out_buf = bytearray()
        self.err_buf = bytearray()
        self.out_eof = False
        self.err_eof = False

    # -- reading ------------------------------------------------------------

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if fd == self.out:
            if data:
                self.out_buf += data
            else:
                self.out_eof = True
        else:
            if data:
                self.err_buf += data
            else:
                self.err_eof = True

    def pump(self, write: bool = False, timeout: Optional[float] = None) -> bool:
        """Wait for output (kept in ``out_buf``/``err_buf``) or, with ``write``,
        for room in stdin; returns whether stdin can take more."""
        poller = select.poll()
        if not self.out_eof:
            poller.register(self.out, select.POLLIN)
        if not self.err_eof:
            poller.register(self.err, select.POLLIN)
        if write and self.inp is not None:
            poller.register(self.inp, select.POLLOUT)
        writable = False
        for fd, event in poller.poll(None if timeout is None else int(timeout * 1000)):
            if fd == self.inp:
                writable = True   # POLLERR too: the next write tells
            else:
                self._read(fd)
        return writable

    def readline(self, deadline: Optional[float] = None) -> Optional[bytes]:
        """The next stdout line (with its newline); the last partial line at
        end of file; None once stdout is exhausted.  Raises
        :class:`ChannelTimeout` if no whole line came by ``deadline``
        (``time.monotonic()``)."""
        while True:
            end = self.out_buf.find(b"\n")
            if end >= 0:
                line = bytes(self.out_buf[:end + 1])
                del self.out_buf[:end + 1]
                return line
            if self.out_eof:
                if self.out_buf:
                    line = bytes(self.out_buf)
                    self.out_buf.clear()
                    return line
                return None
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ChannelTimeout()
            self.pump(timeout=left)

    def drain(self, timeout: float) -> None:
        """Read until both output streams end or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while not (self.out_eof and self.err_eof):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.pump(timeout=left)

    def stderr_tail(self) -> str:
        """The last non-empty line the command wrote on stderr."""
        lines = [ln.strip() for ln in bytes(self.err_buf).decode("utf-8", "replace").splitlines()]
        lines = [ln for ln in lines if ln]
        return lines[-1] if lines else ""

    # -- writing (file-like, for Payload.write_to and the bundle) ------------

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        total = len(view)
        deadline = None
        while view:
            if self.inp is None:
                raise BrokenPipeError("the target's stdin is closed")
            try:
                n = os.write(self.inp, view)
            except BlockingIOError:
                left = None
                if self.stall_timeout is not None:
                    now = time.monotonic()
                    deadline = deadline or now + self.stall_timeout
                    left = deadline - now
                    if left <= 0:
                        raise ChannelTimeout() from None
                self.pump(write=True, timeout=left)
                continue
            deadline = None
            view = view[n:]
        return total

    def flush(self) -> None:
        pass

    def close_input(self) -> None:
        if self.inp is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            self.inp = None
