"""pyteleport.protect(): a program saves itself at a termination signal
(real signals, a real ``timeout -s TERM``) and continues from that
instruction in a new process, protected again."""

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys

import pytest

import pyteleport
from progs import describe, run, run_python, write_program

# Each step sleeps a little, so that most signals land in time.sleep (the
# handler runs, the sleep goes on, the snapshot is taken right after it).
# Every line carries the pid of the process that printed it.
PROGRAM = """\
import json, os, sys, threading, time
import pyteleport

options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
if os.environ.get("BUSY_THREAD"):       # a thread that runs for a while: the snapshot must wait
    threading.Thread(target=time.sleep, args=(float(os.environ["BUSY_THREAD"]),)).start()
pyteleport.protect(**options)
print(os.getpid(), "ready", flush=True)
total = 0
for i in range(int(os.environ.get("STEPS", "150"))):
    for k in range(3000):
        total = (total * 31 + k + i) % 1000003
    time.sleep(0.01)
    print(os.getpid(), "step", i, total, flush=True)
print(os.getpid(), "done", total, flush=True)
"""


def _lines(stdout: str) -> list:
    """``(pid, text)`` of each line."""
    return [tuple(line.split(" ", 1)) for line in stdout.splitlines()]


def _text(stdout: str) -> list:
    return [text for _, text in _lines(stdout)]


def _pids(stdout: str) -> set:
    return {pid for pid, _ in _lines(stdout)}


@pytest.fixture
def prog(tmp_path):
    return write_program(tmp_path, PROGRAM)


@pytest.fixture
def reference(prog, tmp_path):
    ref = run_python([str(prog)], tmp_path)
    assert ref.returncode == 0 and _text(ref.stdout)[-1].startswith("done"), describe(ref)
    return _text(ref.stdout)


def _start(args, cwd, env_extra=None) -> subprocess.Popen:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _signal_at(proc: subprocess.Popen, marker: str, signum=signal.SIGTERM, timeout=60):
    """Read ``proc``'s lines until one says ``marker`` ("step 20"), send
    ``signum``, then wait for the end: (exit code, every line read, stderr)."""
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if (line.rstrip().split(" ", 1)[-1] + " ").startswith(marker + " "):
            proc.send_signal(signum)
            break
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, "".join(seen) + out, err


def test_timeout_term_saves_and_resume_continues(prog, reference, tmp_path):
    timeout = shutil.which("timeout")
    assert timeout, "coreutils' timeout is missing"
    first = run([timeout, "--preserve-status", "-s", "TERM", "1.5", sys.executable, str(prog)], tmp_path)
    assert first.returncode == pyteleport.EXIT_SAVED == 75, describe(first)
    saved = tmp_path / "prog.pyteleport"
    assert first.stderr == (f"pyteleport: saved the program to {saved} at SIGTERM; to continue it, "
                            f"pyteleport resume {saved}\n"), describe(first)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert "done" not in first.stdout, "the program ended before timeout's signal: make it longer"
    second = run_python(["-m", "pyteleport", "resume", str(saved)], tmp_path)
    assert second.returncode == 0, describe(second)
    assert _text(first.stdout) + _text(second.stdout) == reference, describe(first) + describe(second)
    assert not _pids(first.stdout) & _pids(second.stdout), "lines after the move came from the source"
    assert not [p for p in os.listdir(tmp_path) if ".tmp" in p], os.listdir(tmp_path)


def test_a_resumed_program_is_protected_again(prog, reference, tmp_path):
    saved = tmp_path / "prog.pyteleport"
    outputs = []
    rc, out, err = _signal_at(_start([sys.executable, str(prog)], tmp_path), "step 20")
    assert rc == 75, (rc, out, err)
    outputs.append(out)
    rc, out, err = _signal_at(_start([sys.executable, "-m", "pyteleport", "resume", str(saved)], tmp_path),
                              "step 60")
    assert rc == 75, (rc, out, err)       # saved again, over the first snapshot
    outputs.append(out)
    last = run_python(["-m", "pyteleport", "resume", str(saved)], tmp_path)
    assert last.returncode == 0, describe(last)
    outputs.append(last.stdout)
    assert sum((_text(o) for o in outputs), []) == reference, outputs
    assert len(set.union(*map(_pids, outputs))) == 3, "each part comes from its own process"
    # a checkpoint is not used up by resuming it: the last one goes on the same way twice
    again = run_python(["-m", "pyteleport", "resume", str(saved)], tmp_path)
    assert again.returncode == 0 and _text(again.stdout) == _text(last.stdout), describe(again)


def test_resume_true_continues_when_the_same_command_runs_again(prog, reference, tmp_path):
    command = [sys.executable, str(prog), json.dumps({"resume": True})]
    saved = tmp_path / "prog.pyteleport"
    outputs = []
    for marker in ("step 20", "step 60"):
        proc = _start(command, tmp_path)
        rc, out, err = _signal_at(proc, marker)
        assert rc == 75 and saved.exists(), (rc, out, err)
        assert _pids(out) == {str(proc.pid)}, "the snapshot is resumed in the same process (exec)"
        outputs.append(out)
    last = run(command, tmp_path)
    assert last.returncode == 0, describe(last)
    outputs.append(last.stdout)
    assert sum((_text(o) for o in outputs), []) == reference, outputs
    assert not saved.exists(), "the snapshot of a program that ended must go"
    fresh = run(command, tmp_path)      # nothing to resume: the program starts afresh
    assert fresh.returncode == 0 and _text(fresh.stdout) == reference, describe(fresh)


def test_resume_true_refuses_the_snapshot_of_another_command(prog, tmp_path):
    command = [sys.executable, str(prog), json.dumps({"resume": True})]
    rc, out, err = _signal_at(_start(command, tmp_path), "step 5")
    assert rc == 75, (rc, out, err)
    other = run(command + ["--other"], tmp_path)
    assert other.returncode == 1, describe(other)
    assert "is the snapshot of another command" in other.stderr and "remove it" in other.stderr, \
        describe(other)
    assert (tmp_path / "prog.pyteleport").exists(), "the refused snapshot is kept"


def test_then_continue_saves_and_carries_on(prog, reference, tmp_path):
    saved = tmp_path / "at-usr1.ckpt"
    options = {"signal": "USR1", "then": "continue", "path": str(saved)}
    rc, out, err = _signal_at(_start([sys.executable, str(prog), json.dumps(options)], tmp_path),
                              "step 30", signal.SIGUSR1)
    assert rc == 0 and _text(out) == reference, (rc, out, err)
    assert f"saved the program to {saved} at SIGUSR1; it carries on" in err, err
    resumed = run_python(["-m", "pyteleport", "resume", str(saved)], tmp_path)
    assert resumed.returncode == 0, describe(resumed)
    tail = _text(resumed.stdout)
    assert 0 < len(tail) < len(reference) - 30 and tail == reference[-len(tail):], describe(resumed)


def test_environment_defaults(prog, tmp_path):
    saved = tmp_path / "from-env.ckpt"
    env = {"PYTELEPORT_PROTECT_SIGNAL": "USR2", "PYTELEPORT_PROTECT_EXIT_CODE": "3",
           "PYTELEPORT_PROTECT_PATH": str(saved)}
    rc, out, err = _signal_at(_start([sys.executable, str(prog)], tmp_path, env), "step 5", signal.SIGUSR2)
    assert rc == 3 and saved.exists(), (rc, out, err)


def test_a_refused_snapshot_is_tried_again(prog, tmp_path):
    """A thread still running refuses the snapshot; once it ended, the retry saves."""
    env = {"BUSY_THREAD": "0.5", "STEPS": "400"}     # the program runs for seconds after the thread
    reference = run_python([str(prog)], tmp_path, env_extra=env)
    assert reference.returncode == 0, describe(reference)
    rc, out, err = _signal_at(_start([sys.executable, str(prog)], tmp_path, env), "step 3")
    assert rc == 75, (rc, out, err)
    assert "cannot save the program at the signal: another live thread" in err, err
    assert "trying again in 1 s" in err, err
    resumed = run_python(["-m", "pyteleport", "resume", str(tmp_path / "prog.pyteleport")], tmp_path)
    assert resumed.returncode == 0, describe(resumed)
    assert _text(out) + _text(resumed.stdout) == _text(reference.stdout), describe(resumed)


@pytest.mark.parametrize("options, message", [
    ({"signal": "KILL"}, "unknown signal 'KILL'"),
    ({"signal": "NOPE"}, "unknown signal 'NOPE'"),
    ({"then": "stop"}, "then='stop'; use one of 'exit', 'continue'"),
    ({"exit_code": 300}, "exit_code must be an exit code from 0 to 255, not 300"),
    ({"retry": -1}, "retry must be a number of seconds >= 0"),
    ({"sync": "maybe"}, "sync must be true or false"),
])
def test_bad_options_are_refused_before_anything_is_installed(options, message):
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(pyteleport.TeleportError, match=r"pyteleport\.protect\(\): .*" + re.escape(message)):
        pyteleport.protect(**options)
    assert signal.getsignal(signal.SIGTERM) is before
