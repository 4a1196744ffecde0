"""Faults at handoff time are real ones here: a file removed before the target
reopens it, a module deleted before the target imports it, an interpreter of
another Python version, an interpreter that does not exist.  Each must give a
TeleportError in the source with the target's own reason, and the program must
carry on where it was, able to retry."""

import glob
import os
import signal
import subprocess
import sys


import pytest

from progs import describe, run_python, write_program

PRELUDE = """\
import os, sys
import pyteleport

START = os.getpid()


def say(*args):
    print("SAME" if os.getpid() == START else "MOVED", *args, flush=True)
"""


def _lines(proc):
    return proc.stdout.splitlines()


def test_file_gone_on_target_then_retry(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("one\ntwo\nthree\n")
    prog = write_program(tmp_path, PRELUDE + f"""
f = open({str(data)!r})
first = f.readline().strip()
os.rename({str(data)!r}, {str(data) + ".away"!r})   # the path is gone, the file object is open
try:
    pyteleport.teleport()
except pyteleport.TeleportError as e:
    say("ERROR", str(e))
say("still reading", first, f.readline().strip())       # nothing lost: same file object, same position
os.rename({str(data) + ".away"!r}, {str(data)!r})
pyteleport.teleport()                                      # retry once the path exists again
say("after retry", f.readline().strip())
""")
    proc = run_python([str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = _lines(proc)
    assert lines[0].startswith("SAME ERROR "), describe(proc)
    assert str(data) in lines[0] and "does not exist" in lines[0], describe(proc)
    assert lines[1:] == ["SAME still reading one two", "MOVED after retry three"], describe(proc)


def test_module_missing_on_target(tmp_path):
    pkg = tmp_path / "vanishing.py"
    pkg.write_text("VALUE = 41\n")
    prog = write_program(tmp_path, PRELUDE + f"""
import vanishing
vanishing.VALUE += 1
os.unlink({str(pkg)!r})
try:
    pyteleport.teleport()
except pyteleport.TeleportError as e:
    say("ERROR", str(e))
say("value", vanishing.VALUE)
""")
    proc = run_python([str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = _lines(proc)
    assert lines[0].startswith("SAME ERROR "), describe(proc)
    assert "vanishing" in lines[0] and "could not resume" in lines[0], describe(proc)
    assert lines[1] == "SAME value 42", describe(proc)


def _other_interpreter():
    here = "%d.%d" % sys.version_info[:2]
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3.*"))):
            name = os.path.basename(path)[len("python"):]
            if name != here and name in ("3.9", "3.10", "3.11", "3.12", "3.13") and os.access(path, os.X_OK):
                return path
    raise AssertionError("no second CPython under pyenv: the test machine must have 3.9-3.13")


def test_other_python_version_is_refused_then_local_retry(tmp_path):
    other = _other_interpreter()
    prog = write_program(tmp_path, PRELUDE + f"""
items = [1, 2, 3]
try:
    pyteleport.teleport(python={other!r})
except pyteleport.TeleportError as e:
    say("ERROR", str(e))
items.append(4)
pyteleport.teleport()
say("items", items)
""")
    proc = run_python([str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = _lines(proc)
    here = "%d.%d" % sys.version_info[:2]
    assert lines[0].startswith("SAME ERROR "), describe(proc)
    assert f"made by Python {here}" in lines[0], describe(proc)
    assert lines[1] == "MOVED items [1, 2, 3, 4]", describe(proc)


def test_interpreter_that_does_not_exist(tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
try:
    pyteleport.teleport(python="/nonexistent/bin/python3")
except pyteleport.TeleportError as e:
    say("ERROR", str(e))
say("carried on")
""")
    proc = run_python([str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = _lines(proc)
    assert lines[0].startswith("SAME ERROR ") and "/nonexistent/bin/python3" in lines[0], describe(proc)
    assert lines[1] == "SAME carried on", describe(proc)


def test_unknown_backend_and_bad_option(tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
for kwargs in ({"backend": "nowhere"}, {"no_such_option": 1}):
    try:
        pyteleport.teleport(**kwargs)
    except pyteleport.TeleportError as e:
        say("ERROR", str(e))
say("carried on")
""")
    proc = run_python([str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = _lines(proc)
    assert lines[0].startswith("SAME ERROR unknown backend 'nowhere'") and "local" in lines[0], describe(proc)
    assert lines[1].startswith("SAME ERROR unknown option 'no_such_option' for the local backend (its options: "), describe(proc)
    assert lines[2] == "SAME carried on", describe(proc)


def test_sigterm_to_source_reaches_target(tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
import signal, time
signal.signal(signal.SIGTERM, lambda *a: (say("got SIGTERM"), sys.exit(7)))
pyteleport.teleport()
say("ready")
time.sleep(30)
say("not reached")
""")
    proc = subprocess.Popen([sys.executable, str(prog)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "MOVED ready\n"
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            state = {pid: _signal_state(pid) for pid in [proc.pid, *_children(proc.pid)]}
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"no exit 20 s after SIGTERM: {state} {out!r} {err!r}") from None
    finally:
        proc.kill()
    assert out == "MOVED got SIGTERM\n", (out, err)
    assert proc.returncode == 7, (proc.returncode, err)


def _children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _signal_state(pid):
    """What a hung process is doing with signals, for the failure message."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        with open(f"/proc/{pid}/wchan") as f:
            wchan = f.read()
    except OSError as e:
        return str(e)
    keep = ("State", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
    return {**{k: fields[k].strip() for k in keep}, "wchan": wchan}


def test_target_that_never_confirms_is_stopped(tmp_path):
    # the module's import blocks on the target (a marker file exists by then)
    (tmp_path / "slowimport.py").write_text(
        "import os, time\n"
        "if os.path.exists('target.marker'):\n"
        "    open('target.started', 'w').write(str(os.getpid()))\n"
        "    time.sleep(60)\n"
        "VALUE = 1\n")
    prog = write_program(tmp_path, PRELUDE + """
import slowimport
open("target.marker", "w").close()
try:
    pyteleport.teleport(handoff_timeout=1)
except pyteleport.TeleportError as e:
    say("ERROR", str(e))
say("carried on", slowimport.VALUE)
""")
    proc = run_python([str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = _lines(proc)
    assert lines[0].startswith("SAME ERROR ") and "did not confirm" in lines[0], describe(proc)
    assert lines[1] == "SAME carried on 1", describe(proc)
    target_pid = int((tmp_path / "target.started").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(target_pid, 0)   # the target was stopped, not left behind


@pytest.mark.parametrize("setting", [{"PYTELEPORT_HANDOFF_TIMEOUT": "soon"}, {"OPTION": "-1"}])
def test_bad_handoff_timeout_is_refused_before_the_move(tmp_path, setting):
    prog = write_program(tmp_path, PRELUDE + """
option = float(os.environ["OPTION"]) if "OPTION" in os.environ else None
try:
    pyteleport.teleport(handoff_timeout=option)
except pyteleport.TeleportError as e:
    say("ERROR", str(e))
say("carried on")
""")
    proc = run_python([str(prog)], tmp_path, env_extra=setting)
    assert proc.returncode == 0, describe(proc)
    name, value = ("handoff_timeout", "-1.0") if "OPTION" in setting else ("PYTELEPORT_HANDOFF_TIMEOUT", "'soon'")
    assert _lines(proc) == [f"SAME ERROR local backend: {name} must be a positive number of seconds, "
                            f"not {value}", "SAME carried on"], describe(proc)


PROGRESS_PROGRAM = PRELUDE + """
big = bytes(80 * 2**20)
pyteleport.teleport()
say("moved", len(big))
"""


def test_progress_shown_on_a_terminal(tmp_path):
    import pty
    prog = write_program(tmp_path, PROGRESS_PROGRAM)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, str(prog)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:   # EIO: every writer closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == b"MOVED moved 83886080\n", (out, seen)
    text = seen.decode("utf-8", "replace")
    assert "teleport: " in text and "MiB" in text and "(100%" in text, text


def test_no_progress_when_not_a_terminal(tmp_path):
    prog = write_program(tmp_path, PROGRESS_PROGRAM)
    proc = run_python([str(prog)], tmp_path)
    assert proc.returncode == 0 and proc.stdout == "MOVED moved 83886080\n", describe(proc)
    assert "MiB" not in proc.stderr, describe(proc)
