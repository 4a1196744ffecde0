"""Tiny helper imported by every scenario program.

``log`` prints one line prefixed with the current pid, so the test harness can
tell in which process each line was printed.  ``move`` prints the marker line
``--move--`` and then, depending on ``SCENARIO_MODE``:

* ``none``       does nothing (the reference run);
* ``teleport``   calls ``pyteleport.teleport()``;
* ``checkpoint`` calls ``pyteleport.checkpoint($SCENARIO_CHECKPOINT)``; in the
  source process (return value False) the program stops right there and the
  harness resumes the payload with ``python -m pyteleport resume PATH``;
* ``bash``, ``ssh`` call ``pyteleport.teleport(backend=MODE, **options)``
  with the options in ``$SCENARIO_BACKEND_OPTIONS`` (JSON);
* ``slurm`` calls ``pyteleport.teleport(backend="slurm", **options)`` with
  the options in ``$SCENARIO_SLURM_OPTIONS`` (JSON; the job inherits the
  environment, as sbatch exports it).

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


def _backend_options():
    """Options for the bash and ssh backends, from ``SCENARIO_BACKEND_OPTIONS``
    (JSON).  The harness's variables go along in ``env``: a shell on the
    target starts with its own environment."""
    import json

    options = json.loads(os.environ.get("SCENARIO_BACKEND_OPTIONS", "{}"))
    env = options.setdefault("env", {})
    for key in ("SCENARIO_MODE", "SCENARIO_BACKEND_OPTIONS", "PYTHONIOENCODING"):
        if key in os.environ:
            env.setdefault(key, os.environ[key])
    return options


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
    elif mode in ("bash", "ssh"):
        pyteleport.teleport(backend=mode, **_backend_options())
    elif mode == "slurm":
        import json

        pyteleport.teleport(backend="slurm", **json.loads(os.environ.get("SCENARIO_SLURM_OPTIONS", "{}")))
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
