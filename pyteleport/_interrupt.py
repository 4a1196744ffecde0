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

import sys
from typing import Callable, Optional

from ._errors import TeleportError


def at_next_instruction(frame, action: Callable, on_error: Optional[Callable] = None) -> None:
    """Call from a signal handler with the frame it interrupted.

    Right before that frame executes its next instruction, pack the program so
    that it resumes exactly there and call ``action(payload)`` (a
    :class:`pyteleport._payload.Payload`).  If packing fails, ``on_error(exc)``
    is called (default: log it as an error) and the program simply goes on.
    Tracing set by a debugger or profiler is put back before ``action`` runs.
    """
    previous_global = sys.gettrace()
    previous_local = frame.f_trace
    previous_opcodes = frame.f_trace_opcodes

    def restore() -> None:
        frame.f_trace_opcodes = previous_opcodes
        frame.f_trace = previous_local
        sys.settrace(previous_global)

    def local(f, event, arg):
        if event != "opcode" or f is not frame:
            return local
        restore()
        from ._pack import pack
        try:
            payload = pack(f, None, at_instruction=True)
        except TeleportError as e:
            (on_error or _log_error)(e)
            return previous_local
        action(payload)
        return previous_local

    def other_frames(f, event, arg):
        return None   # trace nothing else meanwhile

    frame.f_trace = local
    frame.f_trace_opcodes = True
    sys.settrace(other_frames)


def _log_error(exc: BaseException) -> None:
    import logging
    logging.getLogger("pyteleport").error("cannot snapshot the interrupted program: %s", exc)
