"""Tiny helper imported by every scenario program.

``log`` prints one line prefixed with the current pid, so the test harness can
tell in which process each line was printed.  ``move`` prints the marker line
``--move--`` and then, depending on ``SCENARIO_MODE``:

* ``none``       does nothing (the reference run);
* ``teleport``   calls ``pyteleport.teleport()``;
* ``checkpoint`` calls ``pyteleport.checkpoint($SCENARIO_CHECKPOINT)``; in the
  source process (return value False) the program stops right there and the
  harness resumes the payload with ``python -m pyteleport resume PATH``.

``SCENARIO_MODE`` may be a comma separated list (``teleport,checkpoint``): the
n-th call of ``move`` uses the n-th entry (the last entry repeats).  The count
of moves so far is kept in the environment, which every move carries along.
"""

import os

MARKER = "--move--"
_COUNT_VAR = "_SCENARIO_MOVE_COUNT"


def log(*args):
    print(f"[{os.getpid()}]", *args, flush=True)


def _next_mode():
    modes = [m.strip() for m in os.environ.get("SCENARIO_MODE", "none").split(",")]
    count = int(os.environ.get(_COUNT_VAR, "0"))
    os.environ[_COUNT_VAR] = str(count + 1)
    return modes[min(count, len(modes) - 1)]


def move():
    mode = _next_mode()
    print(MARKER, flush=True)
    if mode == "none":
        return
    import pyteleport

    if mode == "teleport":
        pyteleport.teleport()
    elif mode == "checkpoint":
        if not pyteleport.checkpoint(os.environ["SCENARIO_CHECKPOINT"]):
            os._exit(0)
    else:
        raise ValueError(f"unknown SCENARIO_MODE entry {mode!r}")


def run_case(namespace, end="end"):
    """Run the case named by ``sys.argv[1]``: the function ``case_<name>`` of
    ``namespace`` (a scenario's globals), between two log lines."""
    import sys
    case = sys.argv[1]
    log("case", case)
    namespace["case_" + case]()
    log(end)
