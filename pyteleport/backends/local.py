"""The ``local`` backend: continue in a new Python process on this machine.

The new process runs the same interpreter (with the same flags), inherits the
standard streams directly (so output stays in order and unbuffered), and gets
the payload and reports back through two private pipes.
"""
from __future__ import annotations

import os
import select
import sys
# the C module: signal.py builds enums at import time (milliseconds per move)
import _signal as signal

from .. import _log
from .._errors import TeleportError
from .. import _hop
from . import Backend, Target, _adoption, entry_code, handoff_timeout_option
from ._spawn import spawn
from ._wakeup import wait_process

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional

_FORWARDED = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def restore_command(python: str, payload_fd: int, status_fd: int, hop_fd: Optional[int] = None) -> list:
    """Command line that runs the restore entry, finding this very pyteleport
    (``hop_fd``: the waiter's pipe of a chain of moves, see _adoption.py)."""
    boot = entry_code("pyteleport._core.restore:main_fd")
    flags = interpreter_flags() if python == sys.executable else []
    hop = [] if hop_fd is None else [_adoption.HOP_ARG, str(hop_fd)]
    return [python, *flags, "-c", boot, "--payload-fd", str(payload_fd), "--status-fd", str(status_fd), *hop]


_FLAGS = ("optimize", "debug", "dont_write_bytecode", "no_site", "verbose", "bytes_warning", "quiet",
          "isolated", "ignore_environment", "no_user_site", "safe_path", "dev_mode")


def interpreter_flags() -> list:
    """This interpreter's command-line flags (-O, -X dev, -W ...), to start
    the target the same way.  ``subprocess`` knows how to spell them, but
    costs milliseconds to import: only asked when there is a flag."""
    if not (sys.warnoptions or getattr(sys, "_xoptions", None)
            or any(getattr(sys.flags, name, 0) for name in _FLAGS)):
        return []
    import subprocess
    return subprocess._args_from_interpreter_flags()


class _Forwarding:
    """Signals to the source go to the target from the moment it exists (the
    target may run the program as soon as it has confirmed): installed before
    the payload is sent, undone if the handoff fails."""

    def __init__(self, proc):
        self.proc = proc   # a subprocess.Popen or a _spawn.Child
        self.saved = {}
        # Ctrl-C reaches the target directly (same process group): not twice
        self._install(signal.SIGINT, signal.SIG_IGN)
        for name in _FORWARDED:
            if hasattr(signal, name):
                self._install(getattr(signal, name), self._forward)

    def _install(self, sig, handler):
        self.saved[sig] = signal.signal(sig, handler)

    def _forward(self, signum, _frame):
        try:
            self.proc.send_signal(signum)
        except ProcessLookupError:
            pass

    def undo(self) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


class LocalTarget(Target):
    def __init__(self, proc, forwarding=None, hop_r: Optional[int] = None):
        self.proc = proc
        self.forwarding = forwarding
        self.hop_r = hop_r       # a waiter's end of the chain's pipe (see _adoption.py)

    def wait(self) -> int:
        if self.hop_r is not None:
            code = _adoption.wait_chain(self.proc, self.hop_r, self.forwarding)
        elif self.forwarding is not None and _hop.announce(self.proc.pid):
            return 0         # a hop of a chain: the waiter waits for the target now
        else:
            code = wait_process(self.proc)
        return 128 - code if code < 0 else code


class LocalBackend(Backend):
    """Continue in a new process of this machine.

    :param python: interpreter to run (default: this one, ``sys.executable``;
        environment variable ``PYTELEPORT_PYTHON``).
    :param handoff_timeout: seconds the target may take, once it has the
        payload, to confirm that it rebuilt the program (default 600;
        ``PYTELEPORT_HANDOFF_TIMEOUT``); past it the target is stopped and
        the move fails with the program still running here.
    """

    name = "local"

    def __init__(self, python: Optional[str] = None, handoff_timeout: Optional[float] = None):
        self.python = python or os.environ.get("PYTELEPORT_PYTHON") or sys.executable
        self.handoff_timeout = handoff_timeout_option(handoff_timeout, "local backend")
        self._started = None   # (proc, payload_w, status_r, hop_r) between prepare() and spawn()

    def prepare(self) -> None:
        """Start the target before the program is packed: its interpreter
        start-up overlaps with the packing (``pyteleport.api`` calls this;
        :meth:`cancel` stops the target if the packing fails)."""
        if self._started is not None:
            return
        payload_r, payload_w = os.pipe()
        status_r, status_w = os.pipe()
        # a chain of moves: a hop passes its waiter's pipe on; a first source
        # that only waits once the target runs becomes the chain's waiter
        hop_r = hop_w = None
        hop = _hop.inherited()
        if hop is None and not self.keeps_running:
            hop_r, hop_w = os.pipe()
            hop = hop_w
        fds = (payload_r, status_w) + (() if hop is None else (hop,))
        try:
            proc = spawn(restore_command(self.python, payload_r, status_w, hop), pass_fds=fds)
        except OSError as e:
            for fd in (payload_r, payload_w, status_r, status_w, hop_r, hop_w):
                if fd is not None:
                    os.close(fd)
            raise TeleportError(f"local backend: cannot start {self.python!r}: {e.strerror}") from None
        os.close(payload_r)
        os.close(status_w)
        if hop_w is not None:
            os.close(hop_w)
            # before the payload is sent, so before the target can move again;
            # here, while the target's interpreter starts (ctypes costs milliseconds)
            if not _adoption.become_subreaper():
                os.close(hop_r)       # its hops find no reader: each waits, as without
                hop_r = None
        _log.debug("local backend: started pid %d (%s)", proc.pid, self.python)
        self._started = (proc, payload_w, status_r, hop_r)

    def cancel(self) -> None:
        """Stop the target :meth:`prepare` started (the program stays here)."""
        started, self._started = self._started, None
        if started is not None:
            proc, payload_w, status_r, hop_r = started
            for fd in (payload_w, status_r, hop_r):
                if fd is not None:
                    os.close(fd)
            proc.kill()
            proc.wait()

    def spawn(self, payload) -> Target:
        self.prepare()
        (proc, payload_w, status_r, hop_r), self._started = self._started, None
        try:
            target = _handoff(proc, payload, payload_w, status_r, f"local backend ({self.python})",
                              self.handoff_timeout)
        except BaseException:
            if hop_r is not None:
                os.close(hop_r)
            raise
        target.hop_r = hop_r
        return target


def _handoff(proc, payload, payload_w: int, status_r: int, what: str, timeout: float) -> Target:
    """Send the payload, then wait for the target's verdict.  On any failure
    the target is gone and the signal handlers are as they were."""
    forwarding = _Forwarding(proc)
    try:
        target = _deliver(proc, payload, payload_w, status_r, what, timeout)
    except BaseException:
        forwarding.undo()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise
    target.forwarding = forwarding
    return target


def _deliver(proc, payload, payload_w: int, status_r: int, what: str, timeout: float) -> Target:
    # imported here, not at the top: the target is started (prepare) before
    # anything the handoff needs is loaded
    from .._progress import Progress
    from .._core.restore import parse_status
    progress = Progress(payload.size, "teleport")
    try:
        with open(payload_w, "wb", buffering=0) as out:
            payload.write_to(out, progress)
    except BrokenPipeError:
        pass  # the target stopped reading: its status says why
    finally:
        progress.close()
    with open(status_r, "rb") as status:
        ready, _, _ = select.select([status], [], [], timeout)
        if not ready:
            raise TeleportError(
                f"{what}: the target did not confirm the move within {timeout:g} s (it is stopped; "
                "raise handoff_timeout or PYTELEPORT_HANDOFF_TIMEOUT if rebuilding takes longer)")
        line = status.read().decode("utf-8", "replace")
    verdict = parse_status(line)
    if verdict is not None and verdict[0]:
        _log.debug("%s: target %d rebuilt the program; handing over", what, proc.pid)
        return LocalTarget(proc)
    code = proc.wait()
    if verdict is not None:
        raise TeleportError(f"{what}: the target could not resume the program: {verdict[1]}")
    raise TeleportError(f"{what}: the target exited with code {code} before confirming the move")
