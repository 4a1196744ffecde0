"""The ``ssh`` backend against a real OpenSSH server on 127.0.0.1 (``sshd.py``).

Differential scenarios (the same programs as test_scenarios.py, moved over
ssh), every handoff failure the backend must turn into a TeleportError while
the program goes on where it was, and what happens after the handoff: streams,
exit codes, Ctrl-C and other signals, a connection that drops, detach.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from harness import assert_differential, last_stderr_line
from progs import describe, run_python, wait_no_process, write_program

PRELUDE = """\
import json, os, sys
import pyteleport

START = os.getpid()
OPTIONS = json.loads(os.environ.get("TEST_SSH_OPTIONS", "{}"))


def say(*args):
    print("SAME" if os.getpid() == START else "MOVED", *args, flush=True)
"""


def _env(sshd, **options):
    return {"TEST_SSH_OPTIONS": json.dumps(sshd.options(**options))}


def _scenario_env(sshd, **options):
    return {"SCENARIO_BACKEND_OPTIONS": json.dumps(sshd.options(**options))}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------
# differential scenarios over ssh

SCENARIOS = {
    "s01_nested": {},
    "s02_locals_args": dict(moves=2),
    "s03_closures": {},
    "s08_handled_exception": {},
    "s12_recursion": {},
    "s13_globals": {},
    "s14_identity": {},
    "s20_numpy": {},
    "s15_process_context": dict(args=["{tmp}", "alpha", "--beta=2"],
                                extra_env={"SCENARIO_REMOVED_VAR": "must be gone after the move too"}),
    "s16_files": dict(args=["{tmp}"]),
    "s19_stdin": dict(stdin="hello teleport\nsecond line\nthird line\n"),
    "s09_generators": dict(args=["yield_from"]),
    "s06_try": dict(args=["move_in_except_then_finally"]),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_over_ssh(sshd, name):
    kwargs = dict(SCENARIOS[name])
    extra_env = dict(kwargs.pop("extra_env", {}))
    extra_env.update(_scenario_env(sshd))
    assert_differential(f"{name}.py", modes=("none", "ssh"), extra_env=extra_env, **kwargs)


def test_scenario_cases_exist():
    from harness import SCENARIOS as DIR
    for name, kwargs in SCENARIOS.items():
        text = (DIR / f"{name}.py").read_text()
        if "def case_" in text:
            assert f"def case_{kwargs['args'][0]}(" in text, (name, kwargs)


@pytest.mark.parametrize("case,code,line", [
    ("sys_exit", 3, None),
    ("uncaught_builtin", 1, "KeyError: 'missing-key'"),
    ("exit_message", 1, "fatal: configuration missing"),
])
def test_exit_status_over_ssh(sshd, case, code, line):
    results = assert_differential("s18_exit.py", args=[case], modes=("none", "ssh"),
                                  extra_env=_scenario_env(sshd), returncode=code,
                                  exception_line=line)
    if case == "uncaught_builtin":
        assert "Traceback (most recent call last)" in results["ssh"].stderr


def test_two_moves_over_ssh_then_local(sshd):
    results = assert_differential("s17_multi_move.py", moves=2, modes=("none", "ssh", "ssh,teleport"),
                                  extra_env=_scenario_env(sshd))
    assert "Traceback" not in results["ssh"].stderr


def test_package_main_over_ssh(sshd):
    assert_differential(None, python_args=["-m", "scen_pkg"], args=["extra", "--flag=1"],
                        modes=("none", "ssh"), extra_env=_scenario_env(sshd))


# --------------------------------------------------------------------------
# handoff failures: TeleportError with the target's reason, the program goes on


def test_unreachable_port(sshd, tmp_path):
    from sshd import _free_port
    port = _free_port()   # nothing listens there
    prog = write_program(tmp_path, PRELUDE + """
items = [1, 2]
try:
    pyteleport.teleport(backend="ssh", **OPTIONS)
except pyteleport.TeleportError as e:
    say("ERROR", e)
items.append(3)
say("carried on", items)
""")
    env = {"TEST_SSH_OPTIONS": json.dumps({
        "host": "127.0.0.1", "port": port,
        "ssh_options": ["-F", str(sshd.config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]})}
    proc = run_python([prog], tmp_path, env_extra=env)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"SAME ERROR ssh backend (127.0.0.1 port {port}): the target did not start: "), describe(proc)
    assert "Connection refused" in lines[0], describe(proc)
    assert lines[1] == "SAME carried on [1, 2, 3]", describe(proc)


def test_missing_interpreter_then_retry(sshd, tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
try:
    pyteleport.teleport(backend="ssh", python="/nonexistent/bin/python3.99", **OPTIONS)
except pyteleport.TeleportError as e:
    say("ERROR", e)
pyteleport.teleport(backend="ssh", **OPTIONS)
say("moved on retry")
""")
    proc = run_python([prog], tmp_path, env_extra=_env(sshd))
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("SAME ERROR ssh backend (testhost): the target did not start: "), describe(proc)
    assert "/nonexistent/bin/python3.99: No such file or directory" in lines[0], describe(proc)
    assert "name an interpreter that exists there" in lines[0], describe(proc)
    assert lines[1] == "MOVED moved on retry", describe(proc)


def test_nothing_left_after_refusal(sshd, tmp_path):
    """When the login ends before Python takes over (here: no such
    interpreter), the script's watchdog ends too."""
    marker = f"watchdog-marker-{os.getpid()}-{time.monotonic_ns()}"
    prog = write_program(tmp_path, PRELUDE + f"""
try:
    pyteleport.teleport(backend="ssh", python="/nonexistent/python3", setup="true {marker}", **OPTIONS)
except pyteleport.TeleportError as e:
    say("ERROR", e)
""")
    proc = run_python([prog], tmp_path, env_extra=_env(sshd))
    assert proc.returncode == 0 and proc.stdout.startswith("SAME ERROR ssh backend (testhost): "), describe(proc)
    assert wait_no_process(mentioning=marker, timeout=10) == [], "the watchdog (or the login) is still there"


def _other_interpreter():
    import glob
    here = "%d.%d" % sys.version_info[:2]
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    for root in roots:
        for path in sorted(glob.glob(os.path.join(root, "versions", "3.*", "bin", "python3.*"))):
            name = os.path.basename(path)[len("python"):]
            if name != here and name in ("3.9", "3.10", "3.11", "3.12", "3.13") and os.access(path, os.X_OK):
                return path
    raise AssertionError("no second CPython under pyenv: the test machine must have 3.9-3.13")


def test_other_python_version_is_refused(sshd, tmp_path):
    other = _other_interpreter()
    prog = write_program(tmp_path, PRELUDE + f"""
state = {{"n": 1}}
try:
    pyteleport.teleport(backend="ssh", python={other!r}, **OPTIONS)
except pyteleport.TeleportError as e:
    say("ERROR", e)
state["n"] += 1
pyteleport.teleport(backend="ssh", **OPTIONS)
say("state", state)
""")
    proc = run_python([prog], tmp_path, env_extra=_env(sshd))
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    here = "%d.%d" % sys.version_info[:2]
    assert lines[0].startswith("SAME ERROR ssh backend (testhost): the target could not resume the program: "
                               "this is Python 3."), describe(proc)
    assert f"the program runs on Python {here}" in lines[0] and other in lines[0], describe(proc)
    assert lines[1] == "MOVED state {'n': 2}", describe(proc)


def _hide(*paths) -> str:
    return "SetEnv=PYTELEPORT_TEST_HIDE=" + ":".join(str(p) for p in paths)


def _own_packages():
    import bytecode
    import dill
    import pyteleport
    return [os.path.dirname(os.path.abspath(m.__file__)) for m in (pyteleport, dill, bytecode)]


def test_module_missing_on_target_then_shipped(sshd, tmp_path):
    """On a machine without the program's folder (nor pyteleport, dill,
    bytecode): with ship=False the target says which module it lacks and the
    program goes on; by default the code is shipped and the move works."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "helper.py").write_text("VALUE = 41\n\ndef double(x):\n    return 2 * x\n")
    pkg = code / "toolbox"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .inner import triple\n")
    (pkg / "inner.py").write_text("def triple(x):\n    return 3 * x\n")
    (pkg / "later.py").write_text("WORD = 'imported after the move'\n")
    prog = write_program(code, PRELUDE + """
import logging
logging.basicConfig(level=logging.DEBUG, format="LOG %(message)s", stream=sys.stderr)
import helper, toolbox
helper.VALUE += 1
try:
    pyteleport.teleport(backend="ssh", ship=False, **OPTIONS)
except pyteleport.TeleportError as e:
    say("ERROR", e)
say("still here", helper.VALUE)
pyteleport.teleport(backend="ssh", **OPTIONS)
from toolbox import later
say("moved", helper.VALUE, helper.double(4), toolbox.triple(5), later.WORD)
say("from", os.path.dirname(helper.__file__) != os.path.dirname(__file__))
""")
    options = sshd.options("foreign")
    options["ssh_options"] += ["-o", _hide(code, *_own_packages())]
    proc = run_python([prog], tmp_path, env_extra={"TEST_SSH_OPTIONS": json.dumps(options)})
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("SAME ERROR ssh backend (foreign): the target could not resume the program: "
                               "cannot rebuild the program here: ModuleNotFoundError: No module named "), describe(proc)
    assert lines[1] == "SAME still here 42", describe(proc)
    assert lines[2] == "MOVED moved 42 8 15 imported after the move", describe(proc)
    assert lines[3] == "MOVED from True", describe(proc)
    log = proc.stderr
    assert "shipping pyteleport, dill, bytecode (the target cannot import them)" in log, describe(proc)
    assert "shipping helper (1 files from" in log and "shipping toolbox (3 files from" in log, describe(proc)


SHIPPED = re.compile(r"shipped files: (\d+) sent \((\d+) bytes\), (\d+) from the target's cache \((\d+) bytes\)")


def test_ship_cache(sshd, tmp_path):
    """The second move to a machine that lacks the program's code (and
    pyteleport, dill, bytecode) sends none of it again: the target's ship
    cache has it; a damaged cache entry is found by its hash and sent
    again; ship_cache off sends everything."""
    code = tmp_path / "code"
    code.mkdir()
    helper_text = "VALUE = 41\n"
    (code / "helper.py").write_text(helper_text)
    cache = tmp_path / "cache"
    prog = write_program(code, PRELUDE + f"""
import logging
logging.basicConfig(level=logging.DEBUG, format="LOG %(message)s", stream=sys.stderr)
import helper
pyteleport.teleport(backend="ssh", env={{"XDG_CACHE_HOME": {str(cache)!r}}}, **OPTIONS)
say("moved", helper.VALUE)
""")
    options = sshd.options("foreign")
    options["ssh_options"] += ["-o", _hide(code, *_own_packages())]

    def move(**env):
        proc = run_python([prog], tmp_path, env_extra={"TEST_SSH_OPTIONS": json.dumps(options), **env})
        assert proc.returncode == 0 and proc.stdout == "MOVED moved 41\n", describe(proc)
        found = SHIPPED.findall(proc.stderr)
        assert len(found) == 1, describe(proc)
        return tuple(map(int, found[0]))

    sent, sent_bytes, from_cache, cached_bytes = move()
    assert sent > 1 and from_cache == 0 and cached_bytes == 0
    store = cache / "pyteleport" / "ship"
    assert oct(store.stat().st_mode & 0o777) == "0o700"
    entries = {p.name: p for p in store.iterdir()}
    assert len(entries) == sent
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == name for name, p in entries.items())

    assert move() == (0, 0, sent, sent_bytes)

    helper_entry = entries[hashlib.sha256(helper_text.encode()).hexdigest()]
    helper_entry.write_text("VALUE = 'damaged'\n")
    assert move() == (1, len(helper_text), sent - 1, sent_bytes - len(helper_text))
    assert helper_entry.read_text() == helper_text

    assert move(PYTELEPORT_SHIP_CACHE="0") == (sent, sent_bytes, 0, 0)


def test_explicit_ship_and_file_gone(sshd, tmp_path):
    """ship=[...] sends what the program imports only later; a file open for
    reading that the target lacks is refused with the target's reason."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "plugin.py").write_text("NAME = 'plugin loaded there'\n")
    data = tmp_path / "data.txt"
    data.write_text("alpha\nbeta\n")
    prog = write_program(code, PRELUDE + f"""
f = open({str(data)!r})
first = f.readline().strip()
try:
    pyteleport.teleport(backend="ssh", ship=["plugin.py"], **OPTIONS)
except pyteleport.TeleportError as e:
    say("ERROR", e)
f.close()
pyteleport.teleport(backend="ssh", ship=["plugin.py"], **OPTIONS)
import plugin
say(first, plugin.NAME)
""")
    options = sshd.options("foreign")
    options["ssh_options"] += ["-o", _hide(code, data.parent)]
    proc = run_python([prog], code, env_extra={"TEST_SSH_OPTIONS": json.dumps(options)})
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("SAME ERROR ssh backend (foreign): the target could not resume the program: "), describe(proc)
    assert str(data) in lines[0] and "does not exist" in lines[0], describe(proc)
    assert lines[1] == "MOVED alpha plugin loaded there", describe(proc)


def test_setup_cwd_env(sshd, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    prog = write_program(tmp_path, PRELUDE + f"""
os.environ["SET_AT_RUN_TIME"] = "yes"
pyteleport.teleport(backend="ssh", setup="export FROM_SETUP=1; cd /", env={{"FROM_OPTION": "two words"}}, **OPTIONS)
say(os.getcwd(), os.environ.get("FROM_SETUP"), os.environ.get("FROM_OPTION"), os.environ.get("SET_AT_RUN_TIME"))
pyteleport.teleport(backend="ssh", setup=["cd /", "echo setup-output"], cwd={str(work)!r}, **OPTIONS)
say(os.getcwd())
""")
    proc = run_python([prog], tmp_path, env_extra=_env(sshd))
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == [
        "MOVED / 1 two words yes",
        "setup-output",
        f"MOVED {work}",
    ], describe(proc)


# the program's children after a failed move: none may be left (ssh, shells)
CHILDREN = """
def children():
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as f:
        return f.read().split()
"""


def test_setup_hangs_then_timeout_and_retry(sshd, tmp_path):
    """A setup that never ends: TeleportError naming the host and the
    timeout, nothing left running there, and the retry moves."""
    prog = write_program(tmp_path, PRELUDE + CHILDREN + """
import time
state = [1]
t0 = time.monotonic()
try:
    pyteleport.teleport(backend="ssh", setup="sleep 6171", handoff_timeout=3, **OPTIONS)
except pyteleport.TeleportError as e:
    say("ERROR", e)
say("waited", 3 <= time.monotonic() - t0 < 20, "children", children())
state.append(2)
pyteleport.teleport(backend="ssh", **OPTIONS)
say("state", state)
""")
    proc = run_python([prog], tmp_path, env_extra=_env(sshd))
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == ("SAME ERROR ssh backend (testhost): the target did not start (connection, setup, "
                        "Python) within 3 s (handoff_timeout); it is stopped and the program goes on here: "
                        "raise handoff_timeout or PYTELEPORT_HANDOFF_TIMEOUT if that takes longer"), describe(proc)
    assert lines[1:] == ["SAME waited True children []", "MOVED state [1, 2]"], describe(proc)
    assert wait_no_process(["sleep", "6171"]) == [], "the setup still runs on the target"


def test_silent_server_timeout_then_retry(sshd, tmp_path):
    """A server that accepts the connection and never speaks; the timeout
    comes from PYTELEPORT_HANDOFF_TIMEOUT."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    prog = write_program(tmp_path, PRELUDE + CHILDREN + """
silent = dict(OPTIONS, host="127.0.0.1", port=int(sys.argv[1]))
try:
    pyteleport.teleport(backend="ssh", **silent)
except pyteleport.TeleportError as e:
    say("ERROR", e)
say("children", children())
pyteleport.teleport(backend="ssh", handoff_timeout=60, **OPTIONS)
say("moved")
""")
    try:
        proc = run_python([prog, str(port)], tmp_path,
                          env_extra={**_env(sshd), "PYTELEPORT_HANDOFF_TIMEOUT": "2"})
    finally:
        listener.close()
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"SAME ERROR ssh backend (127.0.0.1 port {port}): the target did not start "
                               "(connection, setup, Python) within 2 s (handoff_timeout)"), describe(proc)
    assert lines[1:] == ["SAME children []", "MOVED moved"], describe(proc)


def test_rebuild_hangs_then_timeout(sshd, tmp_path):
    """The target takes the payload but hangs while rebuilding (an object
    whose unpickling sleeps): stopped there, the program goes on here."""
    pidfile = tmp_path / "target.pid"
    prog = write_program(tmp_path, PRELUDE + f"""
class Sleepy:
    def __reduce__(self):
        return (eval, ("open({str(pidfile)!r}, 'w').write(str(__import__('os').getpid())) and "
                       "__import__('time').sleep(600)",))

blocker = Sleepy()
try:
    pyteleport.teleport(backend="ssh", handoff_timeout=8, **OPTIONS)
except pyteleport.TeleportError as e:
    say("ERROR", e)
del blocker
pyteleport.teleport(backend="ssh", **OPTIONS)
say("moved")
""")
    proc = run_python([prog], tmp_path, env_extra=_env(sshd))
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("SAME ERROR ssh backend (testhost): the target did not confirm that it rebuilt "
                               "the program within 8 s (handoff_timeout); it is stopped"), describe(proc)
    assert lines[1:] == ["MOVED moved"], describe(proc)
    assert _wait_gone(int(pidfile.read_text())), "the target still runs"


def test_handoff_timeout_option_checked(sshd, tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
try:
    pyteleport.teleport(backend="ssh", handoff_timeout=-1, **OPTIONS)
except pyteleport.TeleportError as e:
    say("ERROR", e)
""")
    proc = run_python([prog], tmp_path, env_extra=_env(sshd))
    assert proc.stdout.splitlines() == [
        "SAME ERROR ssh backend: handoff_timeout must be a positive number of seconds, not -1"], describe(proc)


# --------------------------------------------------------------------------
# after the handoff


def test_streams_in_order_and_exit_code(sshd, tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
pyteleport.teleport(backend="ssh", **OPTIONS)
for i in range(20000):
    print("out", i)
    if i % 1000 == 0:
        print("err", i, file=sys.stderr)
data = sys.stdin.buffer.read()
print("stdin bytes", len(data), data.count(b"\\n"), flush=True)
sys.exit(7)
""")
    stdin = "".join(f"line {i} \u00e9\n" for i in range(50000))
    proc = run_python([prog], tmp_path, stdin=stdin, env_extra=_env(sshd))
    assert proc.returncode == 7, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[:20000] == [f"out {i}" for i in range(20000)], describe(proc)
    assert lines[20000] == f"stdin bytes {len(stdin.encode())} 50000", describe(proc)
    assert proc.stderr.splitlines() == [f"err {i}" for i in range(0, 20000, 1000)], describe(proc)


# the lines go out with os.write: a signal can come as soon as "ready" is
# out, even before print() would return
WAITING = PRELUDE + """
import signal, time
pyteleport.teleport(backend="ssh", **OPTIONS)
moved = "MOVED" if os.getpid() != START else "SAME"
signal.signal(signal.SIGTERM, lambda *a: (os.write(1, f"{moved} got SIGTERM\\n".encode()), sys.exit(5)))
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
try:
    os.write(1, f"{moved} ready\\n".encode())
    time.sleep(60)
except KeyboardInterrupt:
    os.write(1, f"{moved} KeyboardInterrupt\\n".encode())
    sys.exit(3)
say("not interrupted")
"""


@pytest.mark.parametrize("sig,out,code", [
    (signal.SIGINT, "MOVED KeyboardInterrupt\n", 3),
    (signal.SIGTERM, "MOVED got SIGTERM\n", 5),
    (signal.SIGHUP, "", 128 + signal.SIGHUP),
])
def test_signal_forwarded(sshd, tmp_path, sig, out, code):
    prog = write_program(tmp_path, WAITING)
    pidfile = tmp_path / "pid"
    proc = subprocess.Popen([sys.executable, str(prog), str(pidfile)], cwd=tmp_path,
                            env={**os.environ, **_env(sshd)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == "MOVED ready\n", proc.stderr.read()
        remote = int(pidfile.read_text())
        proc.send_signal(sig)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert rest == out, (rest, err)
    assert proc.returncode == code, (proc.returncode, err)
    assert _wait_gone(remote), "the program still runs on the target"


def test_connection_killed_mid_run(sshd, tmp_path):
    prog = write_program(tmp_path, WAITING)
    pidfile = tmp_path / "pid"
    before = set(sshd.session_pids())
    proc = subprocess.Popen([sys.executable, str(prog), str(pidfile)], cwd=tmp_path,
                            env={**os.environ, **_env(sshd)}, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == "MOVED ready\n", proc.stderr.read()
        remote = int(pidfile.read_text())
        sessions = set(sshd.session_pids()) - before
        assert sessions, "no sshd session process found"
        for pid in sessions:
            os.kill(pid, signal.SIGKILL)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 255, (proc.returncode, rest, err)
    assert rest == "", rest
    assert last_stderr_line(err).startswith("ssh backend (testhost): lost the connection to the program ("), err
    assert _wait_gone(remote), "the program still runs on the target after the connection dropped"


def test_detach(sshd, tmp_path):
    out = tmp_path / "detached"
    prog = write_program(tmp_path, PRELUDE + f"""
import time
say("before")
pyteleport.teleport(backend="ssh", detach={str(out)!r}, **OPTIONS)
time.sleep(1)
say("after, alone", os.getppid() != START)
print("to stderr", file=sys.stderr)
""")
    started = time.monotonic()
    proc = run_python([prog], tmp_path, env_extra=_env(sshd))
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "SAME before\n", describe(proc)
    deadline = started + 30
    while time.monotonic() < deadline and "after" not in (out.with_suffix(".out").read_text()
                                                           if out.with_suffix(".out").exists() else ""):
        time.sleep(0.1)
    assert (tmp_path / "detached.out").read_text() == "MOVED after, alone True\n"
    assert (tmp_path / "detached.err").read_text() == "to stderr\n"
    assert oct((tmp_path / "detached.out").stat().st_mode & 0o777) == "0o600"


# --------------------------------------------------------------------------
# the original pyteleport's README, as written


SEED_ONE = """\
from flow_control import bash_teleport
from socket import gethostname
from os import getpid

def log(*args):
    print(f"[{gethostname()}/{getpid()}]", *args)

log("hi")
bash_teleport("ssh", "cartesius",
    "conda activate py39;",
    other_fn=("mem_view.py", "flow_control.py"))
log("bye")
"""

SEED_TWO = """\
from flow_control import bash_teleport
from os import getpid

def a():
    def b():
        def c():
            result = "hello"
            print("c", getpid(), flush=True)
            bash_teleport("ssh", "cartesius",
                "conda activate py39;",
                other_fn=("mem_view.py", "flow_control.py"))
            print("c", getpid(), flush=True)
            return result + " world"
        return len(c()) + float("3.5")
    return 5 * (3 + b())
assert a() == 87.5
print("done", getpid())
"""


def _seed_dir(tmp_path):
    # the original's modules, as files next to the script
    (tmp_path / "flow_control.py").write_text("from pyteleport import bash_teleport\n")
    (tmp_path / "mem_view.py").write_text("# the original's memory helpers: nothing needed here\n")


def test_seed_readme_first_example(sshd, tmp_path):
    _seed_dir(tmp_path)
    prog = write_program(tmp_path, SEED_ONE, "example.py")
    path = f"{sshd.bin}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = run_python([prog], tmp_path, env_extra={"PATH": path})
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, describe(proc)
    (host1, pid1), (host2, pid2) = (ln.split("]")[0][1:].split("/") for ln in lines)
    assert lines[0].endswith("] hi") and lines[1].endswith("] bye"), describe(proc)
    assert pid1 != pid2 and host1 == host2, describe(proc)
    assert "conda stand-in: activate py39" in proc.stderr, describe(proc)


def test_seed_readme_nested_example(sshd, tmp_path):
    _seed_dir(tmp_path)
    prog = write_program(tmp_path, SEED_TWO, "nested.py")
    path = f"{sshd.bin}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = run_python([prog], tmp_path, env_extra={"PATH": path})
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["c", "c", "done"], describe(proc)
    assert lines[0] != lines[1] and lines[1].split()[1] == lines[2].split()[1], describe(proc)
