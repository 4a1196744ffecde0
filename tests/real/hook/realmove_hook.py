"""Moves a running program at the K-th line event of its own file, or where
a CPU-time timer signal interrupts it, through pyteleport's signal-time path
(``pyteleport._core.interrupt.at_next_instruction``, what
``pyteleport.slurm`` runs on Slurm's warning signal).

Configured by the environment of the program's start (removed at once, so
neither the payload nor the resumed process carries it):

* ``REALMOVE_PROGRAM``: the program's path; nothing happens in any other
  process (the resumed one, a child);
* ``REALMOVE_MODE``: ``none`` (log the CPU time the program takes),
  ``count`` (log how many line events its file runs), ``line:K`` (move at
  the K-th), ``signal:S`` (move where SIGPROF interrupts it after S
  seconds of CPU time);
* ``REALMOVE_ACTION``: ``checkpoint:PATH`` (write the payload, exit 0:
  ``pyteleport resume PATH`` continues) or ``teleport`` (the local backend);
* ``REALMOVE_LOG``: file this appends its events to, one a line:
  ``cpu S``, ``main-cpu S`` (the CPU time its imports took), ``lines N``, ``moved PID where``, ``chain FRAMES`` (each at its instruction), ``target PID``, ``refused
  MESSAGE``, ``gave-up``, ``ended`` (before the timer fired).

A refused move (the program cannot be moved at that point) is logged and
tried again at the next line event (``line``) or after 2 ms more CPU time
(``signal``), at most MAX_TRIES times.
"""
import atexit
import os
import signal
import sys
import time

MAX_TRIES = 25

_state = {"count": 0, "at": 0, "tries": 0, "log": None, "program": None, "action": None}


def _log(line):
    with open(_state["log"], "a") as f:
        f.write(line.replace("\n", " | ") + "\n")


def arm():
    program = os.environ.pop("REALMOVE_PROGRAM")
    mode = os.environ.pop("REALMOVE_MODE", "none")
    action = os.environ.pop("REALMOVE_ACTION", "teleport")
    log = os.environ.pop("REALMOVE_LOG")
    if not sys.argv or os.path.abspath(sys.argv[0]) != os.path.abspath(program):
        return
    _state.update(log=log, program=os.path.abspath(program), action=action)
    kind, _, arg = mode.partition(":")
    if kind == "none":
        _state["start"] = time.process_time()
        atexit.register(lambda: _log(f"cpu {time.process_time() - _state['start']:.6f}"))
        sys.settrace(_call_until_main)
    elif kind == "count":
        atexit.register(lambda: _log(f"lines {_state['count']}"))
        sys.settrace(_call)
    elif kind == "line":
        _state["at"] = int(arg)
        sys.settrace(_call)
    elif kind == "signal":
        # as pyteleport.slurm.arm() does: the handler must import nothing (a
        # signal may land while the program is importing what pyteleport needs)
        from pyteleport._core import interrupt  # noqa: F401
        signal.signal(signal.SIGPROF, _on_signal)
        signal.setitimer(signal.ITIMER_PROF, float(arg))
        atexit.register(_ended)
    else:
        raise SystemExit(f"realmove_hook: unknown REALMOVE_MODE {mode!r}")


# --- line events -------------------------------------------------------------

def _call_until_main(frame, event, arg):
    """Log the CPU time at the program's first statement after its imports
    (its ``if __name__ == "__main__":`` block), then trace nothing more."""
    if frame.f_code.co_filename == _state["program"]:
        return _until_main
    return None


def _until_main(frame, event, arg):
    if event == "line" and frame.f_code.co_name == "<module>" and _is_main_block(frame):
        sys.settrace(None)
        frame.f_trace = None
        _log(f"main-cpu {time.process_time() - _state['start']:.6f}")
        return None
    return _until_main


def _is_main_block(frame):
    with open(frame.f_code.co_filename) as f:
        lines = f.read().splitlines()
    return lines[frame.f_lineno - 1].startswith("if __name__ ==")


def _call(frame, event, arg):
    if frame.f_code.co_filename == _state["program"]:
        return _line
    return None


def _line(frame, event, arg):
    if event != "line":
        return _line
    _state["count"] += 1
    if _state["count"] != _state["at"]:
        return _line
    # no counting trace from here on: the move must not see (nor carry) it
    sys.settrace(None)
    frame.f_trace = None
    from pyteleport._core import interrupt

    def refused(exc):
        _log(f"refused {exc}")
        _state["tries"] += 1
        if _state["tries"] >= MAX_TRIES:
            _log("gave-up")
            return
        _state["at"] = _state["count"] + 1
        sys.settrace(_call)
        frame.f_trace = _line

    interrupt.at_next_instruction(frame, _act, refused)
    return frame.f_trace


# --- timer signal --------------------------------------------------------------

def _on_signal(signum, frame):
    signal.signal(signal.SIGPROF, signal.SIG_DFL)   # not carried to the target
    if not _in_program(frame):
        if getattr(sys.modules.get("__main__"), "__file__", None) is None:
            # Python is still starting (site, before the program's first line): later
            signal.signal(signal.SIGPROF, _on_signal)
            signal.setitimer(signal.ITIMER_PROF, 0.002)
            return
        _log("ended")   # the program ended (atexit, shutdown) before it was moved
        return
    from pyteleport._core import interrupt
    interrupt.at_next_instruction(frame, _act, _refused_at_signal)


def _in_program(frame):
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            return True
        frame = frame.f_back
    return False


def _ended():
    """The program ended before the timer fired (or before a retry): say so,
    rather than let a late signal kill the exiting process."""
    if signal.setitimer(signal.ITIMER_PROF, 0)[0] > 0:
        _log("ended")


def _refused_at_signal(exc):
    _log(f"refused {exc}")
    _state["tries"] += 1
    if _state["tries"] >= MAX_TRIES:
        _log("gave-up")
        return
    signal.signal(signal.SIGPROF, _on_signal)
    signal.setitimer(signal.ITIMER_PROF, 0.002)


# --- the move ----------------------------------------------------------------

def _act(payload):
    frame = sys._getframe(2)   # _act <- at_next_instruction's trace <- the moved frame
    where = f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}:{frame.f_code.co_name}"
    chain = _chain(frame)
    del frame
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    action = _state["action"]
    _log(f"moved {os.getpid()} {where}")
    _log(f"chain {chain}")
    if action.startswith("checkpoint:"):
        from pyteleport._payload.container import write_file   # signed, as checkpoint() writes
        write_file(payload, action[len("checkpoint:"):], "checkpoint", sync=False)
        os._exit(0)
    from pyteleport.backends import get_backend
    target = get_backend("local").spawn(payload)
    _log(f"target {target.proc.pid}")
    os._exit(target.wait())



def _chain(frame):
    """The moved frames, innermost first, each with the instruction it is at
    (what a failure report needs to find the case again)."""
    import dis
    out = []
    while frame is not None:
        code, lasti = frame.f_code, frame.f_lasti
        op = dis.opname[code.co_code[lasti]] if 0 <= lasti < len(code.co_code) else "-"
        out.append(f"{os.path.basename(code.co_filename)}:{frame.f_lineno}:{code.co_name}@{lasti}:{op}")
        frame = frame.f_back
    return " < ".join(out)
