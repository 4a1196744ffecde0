"""Snapshots taken where a signal interrupted the program.

A signal handler runs between two bytecodes of the interrupted frame, at a
point where that frame records no usable position on every version (3.9 has
already moved past the instruction it reports; 3.11+ may run the handler in
the middle of a CALL).  So the handler does not snapshot: it asks for one
opcode trace event on the interrupted frame, which fires right before the
frame executes its next instruction, where the position and the stack depth
are exact.  The snapshot taken there resumes by executing that instruction.
"""
from __future__ import annotations

import signal as _signal
import sys

# nothing is imported while a signal is handled: the program may be in the
# middle of an import (a half-initialised module would fail ours), so what
# packing needs is loaded with this module, and the snapshot waits until the
# import is over (see _outside_imports)
from . import pack as _pack
from .. import _log
from .._errors import TeleportError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional

# the import system's own frames (the same names on every CPython)
_IMPORT_FILES = frozenset({"<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>"})


def _outside_imports(frame):
    """The frame to snapshot from: ``frame`` itself, or, when an import is in
    progress above it, the frame that started the outermost import (it goes
    on once the import is complete)."""
    caller = frame
    f = frame
    while f is not None:
        if f.f_code.co_filename in _IMPORT_FILES:
            caller = f.f_back
        f = f.f_back
    while caller is not None and caller.f_code.co_filename in _IMPORT_FILES:
        caller = caller.f_back   # defensive: never trace the import system itself
    return caller


def at_next_instruction(frame, action: Callable, on_error: Optional[Callable] = None) -> None:
    """Call from a signal handler with the frame it interrupted.

    Right before that frame executes its next instruction (if an import is in
    progress: right after it, in the frame that started it), pack the program
    so that it resumes exactly there and call ``action(payload)`` (a
    :class:`pyteleport._payload.container.Payload`).  If packing or ``action``
    fails, ``on_error(exc)`` is called (default: log it as an error) and the
    program simply goes on.  Tracing set by a debugger or profiler is put back
    before ``action`` runs.
    """
    report = on_error or _log_error
    target = _outside_imports(frame)
    if target is None:
        _report(report, RuntimeError("no frame outside the import system to snapshot"))
        return
    previous_global = sys.gettrace()
    previous_local = target.f_trace
    previous_opcodes = target.f_trace_opcodes

    def restore() -> None:
        target.f_trace_opcodes = previous_opcodes
        target.f_trace = previous_local
        sys.settrace(previous_global)

    def local(f, event, arg):
        if event != "opcode" or f is not target:
            return local
        restore()
        # an exception leaving a trace function would land in the program
        try:
            payload = _pack.pack(f, None, at_instruction=True)
        except Exception as e:
            _report(report, e)
            return previous_local
        try:
            action(payload)
        except Exception as e:
            _report(report, e)
        return previous_local

    def other_frames(f, event, arg):
        return None   # trace nothing else meanwhile

    target.f_trace = local
    target.f_trace_opcodes = True
    sys.settrace(other_frames)


def signal_number(sig, what: str) -> int:
    """The number of signal ``sig`` (``"TERM"``, ``"SIGUSR2"``, ``15``), one a
    program can handle; TeleportError naming ``what`` otherwise."""
    if isinstance(sig, int) or (isinstance(sig, str) and sig.isdigit()):
        number = int(sig)
    elif isinstance(sig, str):
        name = sig.upper()
        number = getattr(_signal, name if name.startswith("SIG") else "SIG" + name, None)
    else:
        number = None
    if number is None or number not in _signal.valid_signals() \
            or number in (_signal.SIGKILL, _signal.SIGSTOP):
        raise TeleportError(f"{what}: unknown signal {sig!r}: give one a program can handle, "
                            "such as 'TERM', 'USR1', 'USR2', 'INT' or 'HUP'")
    return int(number)


def again_after(seconds: float, callback: Callable) -> bool:
    """Call ``callback(frame)`` from a SIGALRM in ``seconds`` (a snapshot
    refused at a signal, tried again): only if the program uses neither
    SIGALRM nor the real-time interval timer; returns whether it will."""
    if _signal.getsignal(_signal.SIGALRM) not in (_signal.SIG_DFL, None) \
            or _signal.getitimer(_signal.ITIMER_REAL)[0] > 0:
        return False

    def on_alarm(signum, frame):
        _signal.signal(_signal.SIGALRM, _signal.SIG_DFL)   # the program's again, not carried along
        callback(frame)

    _signal.signal(_signal.SIGALRM, on_alarm)
    _signal.setitimer(_signal.ITIMER_REAL, seconds)
    return True


def _report(on_error: Callable, exc: BaseException) -> None:
    try:
        on_error(exc)
    except Exception:
        try:
            _log_error(exc)
        except Exception:
            pass


def _log_error(exc: BaseException) -> None:
    log = _log.logger()
    if log is not None:
        log.error("cannot snapshot the interrupted program: %s", _describe(exc))
    else:   # no logging configured: the refusal must not go unseen
        sys.stderr.write(f"pyteleport: cannot snapshot the interrupted program: {_describe(exc)}\n")


def _describe(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, TeleportError) else f"{type(exc).__name__}: {exc}"
