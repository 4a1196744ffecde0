"""The ``bash`` backend (a shell command line on this machine) and the pieces
the ``bash`` and ``ssh`` backends share; ``bash_teleport``, the original's call."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from harness import assert_differential
from progs import describe, run_python, wait_no_process, write_program

@pytest.fixture(autouse=True)
def private_cache_home(tmp_path, monkeypatch):
    """The ship cache of the shells started here goes to the test's folder,
    not to the account's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-home"))


PRELUDE = """\
import json, os, sys
import pyteleport

START = os.getpid()


def say(*args):
    print("SAME" if os.getpid() == START else "MOVED", *args, flush=True)
"""


# --------------------------------------------------------------------------
# differential scenarios through a local shell


@pytest.mark.parametrize("name,kwargs", [
    ("s01_nested.py", {}),
    ("s15_process_context.py", dict(args=["{tmp}", "alpha", "--beta=2"],
                                    extra_env={"SCENARIO_REMOVED_VAR": "gone after the move too"})),
    ("s19_stdin.py", dict(stdin="hello teleport\nsecond line\n")),
    ("s18_exit.py", dict(args=["sys_exit"], returncode=3)),
    ("s17_multi_move.py", dict(moves=2, modes=("none", "bash", "bash,teleport", "checkpoint,bash"))),
])
def test_scenario_through_bash(name, kwargs):
    kwargs = dict(kwargs)
    kwargs.setdefault("modes", ("none", "bash"))
    assert_differential(name, **kwargs)


def test_command_string_through_bash():
    code = (
        "from _scenario import log, move\n"
        "def f(x):\n"
        "    log('before', x)\n"
        "    move()\n"
        "    return x + 1\n"
        "log('result', f(41))\n"
    )
    assert_differential(None, python_args=["-c", code], modes=("none", "bash"),
                        extra_env={"SCENARIO_BACKEND_OPTIONS": json.dumps({"command": "sh -c"})})


# --------------------------------------------------------------------------
# bash_teleport: the original call form


@pytest.mark.parametrize("call,expect", [
    ('pyteleport.bash_teleport()', "login"),
    ('pyteleport.bash_teleport("bash", "-c")', "plain"),
    ('pyteleport.bash_teleport("sh", "-c", "export FROM_PREFIX=yes;")', "prefix"),
    ('pyteleport.bash_teleport(python=sys.executable, setup="cd /", env={"A": "b c"})', "options"),
])
def test_bash_teleport_forms(tmp_path, call, expect):
    prog = write_program(tmp_path, PRELUDE + f"""
def work():
    value = [1, 2]
    {call}
    value.append(3)
    return value
say("result", work(), os.environ.get("FROM_PREFIX"), os.environ.get("A"), os.getcwd() == "/")
""")
    proc = run_python([prog], tmp_path)
    assert proc.returncode == 0, describe(proc)
    want = {
        "login": "MOVED result [1, 2, 3] None None False",
        "plain": "MOVED result [1, 2, 3] None None False",
        "prefix": "MOVED result [1, 2, 3] yes None False",
        "options": "MOVED result [1, 2, 3] None b c True",
    }[expect]
    assert proc.stdout.splitlines() == [want], describe(proc)


def test_bash_teleport_ships_other_fn(tmp_path):
    """other_fn files are made importable on the target (here: from the
    shipped copy, first on sys.path), even if the program imports them later."""
    (tmp_path / "extra_mod.py").write_text("WHERE = __file__\n")
    prog = write_program(tmp_path, PRELUDE + """
pyteleport.bash_teleport(other_fn=("extra_mod.py",))
import extra_mod
say(os.path.dirname(extra_mod.__file__) != os.path.dirname(os.path.abspath(__file__)),
    extra_mod.WHERE.endswith("/explicit/extra_mod.py"))
""")
    proc = run_python([prog], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == ["MOVED True True"], describe(proc)


# --------------------------------------------------------------------------
# failures before the handoff


@pytest.mark.parametrize("options,reason", [
    ({"command": ["/nonexistent/shell", "-c"]},
     "bash backend (/nonexistent/shell -c): cannot start '/nonexistent/shell': No such file or directory"),
    ({"setup": "echo 'module: python/9.9 not found' >&2; exit 3"},
     "bash backend (bash -lc): the target did not start: module: python/9.9 not found"),
    ({"cwd": "/nonexistent/dir"},
     "bash backend (bash -lc): the target did not start: "),
    ({"python": "no-such-python3"},
     "bash backend (bash -lc): the target did not start: "),
    ({"ship": ["no_such_file.py"]},
     "ship: 'no_such_file.py' does not exist here"),
    ({"env": {"1BAD": "x"}},
     "bash backend: env must map variable names to strings"),
])
def test_handoff_failures(tmp_path, options, reason):
    prog = write_program(tmp_path, PRELUDE + f"""
data = {{"kept": True}}
try:
    pyteleport.teleport(backend="bash", **{options!r})
except pyteleport.TeleportError as e:
    say("ERROR", e)
data["after"] = 1
say("carried on", data)
""")
    proc = run_python([prog], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("SAME ERROR ") and reason in lines[0], describe(proc)
    assert lines[1] == "SAME carried on {'kept': True, 'after': 1}", describe(proc)


def test_setup_hangs_then_timeout_and_retry(tmp_path):
    """A setup that never ends: the shell and what it started are killed (its
    own process group), TeleportError names the command and the timeout,
    and the retry moves."""
    prog = write_program(tmp_path, PRELUDE + """
state = [1]
try:
    pyteleport.teleport(backend="bash", setup="sleep 6172", handoff_timeout=2)
except pyteleport.TeleportError as e:
    say("ERROR", e)
with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
    say("children", f.read().split())
state.append(2)
pyteleport.teleport(backend="bash")
say("state", state)
""")
    proc = run_python([prog], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == [
        "SAME ERROR bash backend (bash -lc): the target did not start (connection, setup, Python) within 2 s "
        "(handoff_timeout); it is stopped and the program goes on here: raise handoff_timeout or "
        "PYTELEPORT_HANDOFF_TIMEOUT if that takes longer",
        "SAME children []",
        "MOVED state [1, 2]",
    ], describe(proc)
    assert wait_no_process(["sleep", "6172"], timeout=5) == [], "setup's sleep still runs"


def test_nothing_left_after_failed_setup(tmp_path):
    """A setup that fails ends the shell; its watchdog ends with it."""
    marker = f"watchdog-marker-{os.getpid()}-{time.monotonic_ns()}"
    prog = write_program(tmp_path, PRELUDE + f"""
try:
    pyteleport.teleport(backend="bash", setup="echo {marker} >&2; exit 3")
except pyteleport.TeleportError as e:
    say("ERROR", e)
""")
    proc = run_python([prog], tmp_path)
    assert proc.stdout == f"SAME ERROR bash backend (bash -lc): the target did not start: {marker}\n", describe(proc)
    assert wait_no_process(mentioning=marker, timeout=10) == [], "the watchdog (or the shell) is still there"


def test_interrupt_forwarded(tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
import time
pyteleport.teleport(backend="bash")
try:
    os.write(1, b"MOVED ready\\n" if os.getpid() != START else b"SAME ready\\n")
    time.sleep(60)
except KeyboardInterrupt:
    say("KeyboardInterrupt")
""")
    proc = subprocess.Popen([sys.executable, str(prog)], cwd=tmp_path, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == "MOVED ready\n", proc.stderr.read()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert out == "MOVED KeyboardInterrupt\n", (out, err)
    assert proc.returncode == 0, err


def test_detach_default_files(tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
pyteleport.teleport(backend="bash", detach=True)
say("alone")
""")
    proc = run_python([prog], tmp_path, env_extra={"PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0 and proc.stdout == "", describe(proc)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        outs = list(tmp_path.glob("pyteleport-*.out"))
        if outs and outs[0].read_text():
            break
        time.sleep(0.05)
    assert len(outs) == 1 and outs[0].read_text() == "MOVED alone\n", outs


def test_stdout_closed_early(tmp_path):
    """``prog | head -1``: the program on the target gets a broken pipe as it
    would here, and the source ends."""
    prog = write_program(tmp_path, PRELUDE + """
pyteleport.teleport(backend="bash")
try:
    for i in range(10**7):
        print("line", i, flush=True)
except BrokenPipeError:
    sys.stderr.write("broken pipe\\n")
    sys.stderr.flush()
    os._exit(9)
""")
    proc = subprocess.run(f"{sys.executable} {prog} | head -n 2", shell=True, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout == "line 0\nline 1\n", proc
    assert "broken pipe" in proc.stderr, proc


# --------------------------------------------------------------------------
# pieces


def test_command_line_forms():
    from pyteleport.backends.bash import command_line
    assert command_line(["bash", "-lc"], "S") == ["bash", "-lc", "S"]
    assert command_line(["ssh", "host", "conda activate py39;"], "S") == ["ssh", "host", "conda activate py39;", "S"]
    assert command_line(["sh", "-c", "a;", "b;"], "S") == ["sh", "-c", "a; b; S"]
    assert command_line(["/bin/bash", "-e", "-c"], "S") == ["/bin/bash", "-e", "-c", "S"]
    assert command_line(["ssh", "-c", "aes128-ctr", "host"], "S") == ["ssh", "-c", "aes128-ctr", "host", "S"]


def test_exit_filter_split_anywhere():
    from pyteleport.backends._stream.forward import ExitFilter
    marker = "\x1b[PYTELEPORT-EXIT abc] 42\n".encode()
    data = b"hello\x1b[31mred\x1b[0m\n" + marker + b"late\n"
    for cut in range(len(data) + 1):
        for cut2 in range(cut, len(data) + 1, 7):
            f = ExitFilter("abc")
            out = f.feed(data[:cut]) + f.feed(data[cut:cut2]) + f.feed(data[cut2:]) + f.feed(b"", eof=True)
            assert out == b"hello\x1b[31mred\x1b[0m\nlate\n", (cut, cut2, out)
            assert f.code == 42
    f = ExitFilter("abc")
    assert f.feed(b"\x1b[PYTELEPORT-EXIT other] 1\n") == b"\x1b[PYTELEPORT-EXIT other] 1\n"
    assert f.feed(b"", eof=True) == b"" and f.code is None


def test_target_path_mapping():
    from pyteleport.backends._stream.retarget import target_path
    import sysconfig
    stdlib = sysconfig.get_path("stdlib")
    source = ["/home/me/run", "", "/opt/mylib", stdlib, stdlib + "/lib-dynload", "/home/me/appended"]
    target = ["/other/lib/python3.x", "/other/site-packages"]
    got = target_path(source, target, ["/ship/lib"], {"/opt/mylib": "/ship/r0"})
    assert got == ["/ship/lib", "/home/me/run", "", "/ship/r0", "/opt/mylib",
                   "/other/lib/python3.x", "/other/site-packages", "/home/me/appended"]


def test_units_found(tmp_path, monkeypatch):
    from pyteleport.backends._stream.ship import find_units
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub" / "leaf.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "data.json").write_text("{}")
    (tmp_path / "single.py").write_text("Y = 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    leaf = importlib.import_module("pkg.sub.leaf")
    single = importlib.import_module("single")
    try:
        units = {u.name: u for u in find_units({"pkg.sub.leaf": leaf, "single": single, "os": os})}
    finally:
        for name in ("pkg", "pkg.sub", "pkg.sub.leaf", "single"):
            sys.modules.pop(name, None)
    assert sorted(units) == ["pkg", "single"]
    assert sorted(os.path.relpath(p, tmp_path) for p, _, _ in units["pkg"].files) == [
        "pkg/__init__.py", "pkg/data.json", "pkg/sub/__init__.py", "pkg/sub/leaf.py"]
    assert [os.path.relpath(p, tmp_path) for p, _, _ in units["single"].files] == ["single.py"]


def test_backends_registered():
    from importlib.metadata import entry_points

    from pyteleport.backends import _BUILTIN, get_backend
    eps = entry_points()
    group = eps.select(group="pyteleport.backends") if hasattr(eps, "select") else eps.get("pyteleport.backends", [])
    by_name = {ep.name: ep.value for ep in group}
    for name, spec in (("bash", "pyteleport.backends.bash:BashBackend"), ("ssh", "pyteleport.backends.ssh:SshBackend")):
        assert _BUILTIN[name] == spec
        assert by_name.get(name) == spec, by_name
    assert type(get_backend("ssh", host="somewhere")).__name__ == "SshBackend"
    import pyteleport
    with pytest.raises(pyteleport.TeleportError, match="the ssh backend needs the option host="):
        get_backend("ssh")


def test_detach_never_writes_through_a_planted_link(tmp_path):
    """A symbolic link planted where the detached program's output goes (a
    shared directory) is refused, never followed: the victim is untouched
    and the move fails with the program still running here."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "detached.out").symlink_to(victim)
    prog = write_program(tmp_path, PRELUDE + f"""
try:
    pyteleport.teleport(backend="bash", detach={str(tmp_path / "detached")!r})
except pyteleport.TeleportError as e:
    print("REFUSED", e)
say("still here")
""")
    proc = run_python([prog], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("REFUSED ") and "cannot open the output file" in lines[0], describe(proc)
    assert lines[1:] == ["SAME still here"], describe(proc)
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "detached.err").exists()
