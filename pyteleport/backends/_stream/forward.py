"""After the handoff: the source stands in for the program that now runs on
the target (``bash`` and ``ssh`` backends).

It copies the target's stdout and stderr to its own as soon as bytes arrive
(in order per stream), sends its stdin to the target's relay in frames
(``boot.DATA``, then ``boot.EOF``), forwards SIGINT, SIGTERM, SIGHUP,
SIGQUIT, SIGUSR1 and SIGUSR2 as ``boot.SIGNAL`` frames, and returns the exit
code the relay reports on its *exit* line.  Without that line the connection
was lost: the source says so and returns 255 (what ``ssh`` itself returns).
"""
from __future__ import annotations

import errno
import logging
import os
import select
import signal
import struct
from typing import List, Optional

from .. import Target
from . import boot
from .channel import READ_SIZE, Channel
from .._wakeup import Wakeup

log = logging.getLogger("pyteleport")

def _noted_by_wakeup(_signum, _frame) -> None:
    """A Python handler that does nothing: the signal is taken from the wakeup fd."""


LOST = 255
# the source's own input read ahead at most, while the target does not take it
INPUT_AHEAD = 1 << 20


def frame(kind: bytes, data: bytes = b"") -> bytes:
    return struct.pack(boot.FRAME_HEADER, kind, len(data)) + data


class ExitFilter:
    """Passes the program's stdout through, taking the relay's exit line out."""

    def __init__(self, token: str):
        self.marker = boot.EXIT.format(token).encode()
        self.held = b""
        self.code: Optional[int] = None

    def feed(self, data: bytes, eof: bool = False) -> bytes:
        data = self.held + data
        self.held = b""
        if self.code is not None:
            return data
        at = data.find(self.marker)
        if at >= 0:
            end = data.find(b"\n", at)
            if end < 0 and not eof:
                self.held = data
                return b""
            field = data[at + len(self.marker):end if end >= 0 else len(data)]
            try:
                self.code = int(field.strip())
            except ValueError:
                self.code = LOST
            return data[:at] + (data[end + 1:] if end >= 0 else b"")
        if not eof:
            # keep back a tail that may be the start of the marker
            start = data.rfind(b"\x1b", max(0, len(data) - len(self.marker) + 1))
            if start >= 0 and self.marker.startswith(data[start:]):
                self.held = data[start:]
                return data[:start]
        return data


def _write_all(fd: int, data: bytes) -> bool:
    """Write everything to our own stdout/stderr; False once it is gone."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        except InterruptedError:
            continue
        except OSError:
            return False
        view = view[n:]
    return True


def _stdin_usable() -> bool:
    try:
        os.fstat(0)
    except OSError:
        return False
    return True


class DetachedTarget(Target):
    """A program that runs on by itself: the source has nothing left to do."""

    def wait(self) -> int:
        return 0


class StreamTarget(Target):
    """The program on the target, seen through the shell command's streams."""

    def __init__(self, channel: Channel, prelude: bytes, token: str, what: str):
        self.ch = channel
        self.prelude = prelude
        self.filter = ExitFilter(token)
        self.what = what
        self.signals: List[str] = []
        self.tx = bytearray()           # frames not yet written to the target
        self.stdin_state = "open"      # open | paused (background tty) | done
        self.stdout_gone = False
        # from the handoff on, signals are for the program: take them now.
        # They are read from the interpreter's wakeup fd, written by the
        # interrupt itself: a signal landing just before poll() wakes it.
        self.wake = Wakeup().__enter__()
        self.previous = self._install()

    # -- signals --------------------------------------------------------------

    def _install(self):
        previous = {}
        for name in boot.FORWARDED:
            sig = getattr(signal, name)
            previous[sig] = signal.signal(sig, _noted_by_wakeup)
        previous[signal.SIGCONT] = signal.signal(signal.SIGCONT, _noted_by_wakeup)
        # reading a terminal from the background gives EIO instead of stopping us
        previous[signal.SIGTTIN] = signal.signal(signal.SIGTTIN, signal.SIG_IGN)
        return previous

    def _take_signals(self) -> None:
        for signum in self.wake.drain():
            if signum == signal.SIGCONT:
                if self.stdin_state == "paused":
                    self.stdin_state = "open"
                continue
            try:
                name = signal.Signals(signum).name
            except ValueError:      # a signal the program handles itself
                continue
            if name in boot.FORWARDED:
                self.signals.append(name)

    # -- the loop -------------------------------------------------------------

    def wait(self) -> int:
        ch = self.ch
        if not _write_all(1, self.prelude + self.filter.feed(bytes(ch.out_buf), ch.out_eof)):
            self._stdout_gone()
        ch.out_buf.clear()
        _write_all(2, bytes(ch.err_buf))
        ch.err_buf.clear()
        if not _stdin_usable():
            self.tx += frame(boot.EOF)
            self.stdin_state = "done"
        wake_r, previous = self.wake.fd, self.previous
        last_err = b""
        try:
            while not (ch.out_eof and ch.err_eof):
                while self.signals:
                    name = self.signals.pop(0)
                    log.debug("%s: forwarding %s", self.what, name)
                    self.tx += frame(boot.SIGNAL, name.encode())
                poller = select.poll()
                poller.register(wake_r, select.POLLIN)
                if not ch.out_eof:
                    poller.register(ch.out, select.POLLIN)
                if not ch.err_eof:
                    poller.register(ch.err, select.POLLIN)
                if self.tx and ch.inp is not None:
                    poller.register(ch.inp, select.POLLOUT)
                if self.stdin_state == "open" and len(self.tx) < INPUT_AHEAD and ch.inp is not None:
                    poller.register(0, select.POLLIN)
                for fd, event in poller.poll():
                    if fd == wake_r:
                        self._take_signals()
                    elif fd == ch.out:
                        data = _read(fd)
                        if not data:
                            ch.out_eof = True
                        rest = self.filter.feed(data, eof=not data)
                        if rest and not self.stdout_gone and not _write_all(1, rest):
                            self._stdout_gone()
                    elif fd == ch.err:
                        data = _read(fd)
                        if not data:
                            ch.err_eof = True
                        else:
                            last_err = (last_err + data)[-4096:]
                            _write_all(2, data)
                    elif fd == ch.inp:
                        self._send()
                    elif fd == 0:
                        self._read_stdin()
        finally:
            for sig, handler in previous.items():
                try:
                    signal.signal(sig, handler)
                except (TypeError, ValueError, OSError):
                    pass
            self.wake.__exit__(None, None, None)
        code = ch.proc.wait()
        if self.filter.code is not None:
            return self.filter.code
        if self.stdout_gone:
            return 128 - code if code < 0 else code
        tail = [ln.strip() for ln in last_err.decode("utf-8", "replace").splitlines() if ln.strip()]
        reason = tail[-1] if tail else (f"exit code {code}" if code >= 0 else f"killed by signal {-code}")
        log.error("%s: lost the connection to the program (%s); it was hung up (SIGHUP) there "
                  "if it was still running", self.what, reason)
        return LOST

    def _stdout_gone(self) -> None:
        """Our stdout is closed (``| head``): close the program's too, so it
        gets a broken pipe as it would here."""
        self.stdout_gone = True
        ch = self.ch
        try:
            os.close(ch.out)
        except OSError:
            pass
        ch.out_eof = True

    def _send(self) -> None:
        ch = self.ch
        try:
            n = os.write(ch.inp, self.tx[:1 << 20])
            del self.tx[:n]
        except BlockingIOError:
            pass
        except OSError:            # the connection is gone: the output tells the rest
            self.tx.clear()
            ch.close_input()
            self.stdin_state = "done"

    def _read_stdin(self) -> None:
        try:
            data = os.read(0, READ_SIZE)
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno == errno.EIO:      # a terminal, and we are in the background
                self.stdin_state = "paused"
                return
            data = b""
        if data:
            self.tx += frame(boot.DATA, data)
        else:
            self.tx += frame(boot.EOF)
            self.stdin_state = "done"


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, READ_SIZE)
    except OSError:
        return b""
