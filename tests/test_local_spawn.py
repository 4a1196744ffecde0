"""The local backend's fast start: the target is started with posix_spawn
before the program is packed (backends/_spawn.py, LocalBackend.prepare).

Each program prints the same facts before and after the move; they must be
equal, and the lines after the move must come from a new process.
"""
from __future__ import annotations

import pytest

from progs import describe, run_python, write_program

PRELUDE = """\
import os, sys
import pyteleport
START = os.getpid()

def say(*args):
    print("MOVED" if os.getpid() != START else "SAME", *args, flush=True)
"""


def _lines(proc):
    return proc.stdout.splitlines()


def _assert_same_before_and_after(prog, cwd, flags=(), env=None):
    """The program prints one line before and one after its move: same text,
    the second from the new process."""
    proc = run_python([*flags, str(prog)], cwd, env_extra=env)
    assert proc.returncode == 0, describe(proc)
    before, after = _lines(proc)
    assert before.startswith("SAME ") and after.startswith("MOVED "), describe(proc)
    assert after[len("MOVED "):] == before[len("SAME "):], describe(proc)


def _children() -> str:
    return """
def children():
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
        return f.read().split()
"""


@pytest.mark.parametrize("obstacle", ["thread", "socket"])
def test_failed_packing_stops_the_early_target(tmp_path, obstacle):
    setup, teardown = {
        "thread": ("import threading\nev = threading.Event()\nt = threading.Thread(target=ev.wait)\n"
                   "t.start()\n", "ev.set()\nt.join()\n"),
        "socket": ("import socket\nsock = socket.socket()\n", "sock.close()\ndel sock\n"),
    }[obstacle]
    prog = write_program(tmp_path, PRELUDE + _children() + setup + """
for attempt in range(2):
    try:
        pyteleport.teleport()
    except pyteleport.TeleportError as e:
        say("refused", attempt, "children:", children())
""" + teardown + """
pyteleport.teleport()
say("moved after all")
""")
    proc = run_python([str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert _lines(proc) == ["SAME refused 0 children: []", "SAME refused 1 children: []",
                            "MOVED moved after all"], describe(proc)
    # the cancelled targets said nothing
    assert "Traceback" not in proc.stderr, describe(proc)


def test_inheritable_descriptors_stay_here(tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
r, w = os.pipe()
os.set_inheritable(w, True)     # as Popen(close_fds=True) does, the target must not get it
pipe = os.readlink(f"/proc/self/fd/{w}")

def what_is(fd):
    try:
        return "the same pipe" if os.readlink(f"/proc/self/fd/{fd}") == pipe else "something else"
    except OSError:
        return "closed"

say("fd", what_is(w))
pyteleport.teleport()
say("fd", what_is(w))
""")
    proc = run_python([str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = _lines(proc)
    assert lines[0] == "SAME fd the same pipe", describe(proc)
    assert lines[1] in ("MOVED fd closed", "MOVED fd something else"), describe(proc)


FLAGS_PROGRAM = PRELUDE + """
import warnings
def facts():
    return (sys.flags.optimize, sys.flags.dont_write_bytecode, sys.flags.dev_mode,
            sys.warnoptions, sorted(getattr(sys, "_xoptions", {})))
say(facts())
pyteleport.teleport()
say(facts())
"""


@pytest.mark.parametrize("flags", [[], ["-O"], ["-B", "-W", "error::DeprecationWarning"],
                                   ["-X", "utf8", "-X", "dev"]])
def test_interpreter_flags_reach_the_target(tmp_path, flags):
    prog = write_program(tmp_path, FLAGS_PROGRAM)
    env = {"PYTHONDONTWRITEBYTECODE": "", "PYTHONWARNINGS": "", "PYTHONOPTIMIZE": "",
           "PYTHONDEVMODE": ""}   # only the command line sets flags
    _assert_same_before_and_after(prog, tmp_path, flags, env)


@pytest.mark.parametrize("setup", ["", "signal.signal(signal.SIGPIPE, signal.SIG_DFL)",
                                   "signal.signal(signal.SIGUSR1, signal.SIG_IGN)",
                                   "signal.signal(signal.SIGUSR2, lambda *a: None)"])
def test_signal_dispositions_carry_over(tmp_path, setup):
    prog = write_program(tmp_path, PRELUDE + f"""
import signal
{setup}
def dispositions():
    out = []
    for name in ("SIGPIPE", "SIGXFSZ", "SIGUSR1", "SIGUSR2", "SIGINT"):
        h = signal.getsignal(getattr(signal, name))
        out.append((name, h if isinstance(h, int) else getattr(h, "__name__", repr(h))))
    return out
say(dispositions())
pyteleport.teleport()
say(dispositions())
""")
    _assert_same_before_and_after(prog, tmp_path)


@pytest.mark.parametrize("before", ["", "import functools"])
def test_functools_whole_after_the_move(tmp_path, before):
    # the C pickler is loaded with a stand-in functools (pyteleport/_payload/cpickle.py): the
    # program must still get the real module, before and after the move
    prog = write_program(tmp_path, PRELUDE + before + """
def use():
    import functools, collections
    total = functools.reduce(lambda a, b: a + b, [1, 2, 3])
    cached = functools.lru_cache(maxsize=2)(abs)(-3)
    return total, cached, functools.partial(int, base=2)("101"), collections.OrderedDict(a=1)
say(use())
pyteleport.teleport()
say(use())
""")
    _assert_same_before_and_after(prog, tmp_path)
