"""Snapshots taken where a signal interrupted the program (pyteleport._interrupt):
the resumed program must finish exactly as an uninterrupted run would."""

import signal
import subprocess
import sys
import time

from progs import describe, run_python, write_program

HANDLER = """\
import os, signal, sys
from pyteleport import _interrupt

CHECKPOINT = sys.argv[1]


def on_signal(signum, frame):
    def action(payload):
        with open(CHECKPOINT, "wb") as f:
            payload.write_to(f)
        os._exit(0)

    def on_error(exc):
        print("CANNOT", exc, flush=True)

    _interrupt.at_next_instruction(frame, action, on_error)


signal.signal(signal.SIGUSR1, on_signal)
"""

SELF_SIGNALLED = HANDLER + """
def work(n, stop_at):
    total = 0
    for i in range(n):
        total += i * i
        if i == stop_at:
            os.kill(os.getpid(), signal.SIGUSR1)
        print("step", i, total, flush=True)
    return total


def squares(n):
    for i in range(n):
        yield i * i


print("result", work(6, int(sys.argv[2])), list(squares(3)), {"k": [work(2, -1)]})
"""

TIGHT_LOOP = HANDLER + """
def mix(x):
    return (x * 7 + 3) % 1000003


total, i = 0, 0
print("ready", flush=True)
while i < 4_000_000:
    total = (total + mix(i) * (i % 13)) % 1000000007
    i += 1
print("total", total, i)
"""


def _resume(tmp_path, checkpoint):
    return run_python(["-m", "pyteleport", "resume", str(checkpoint)], tmp_path)


def test_self_signalled_snapshot_resumes_identically(tmp_path):
    prog = write_program(tmp_path, SELF_SIGNALLED)
    reference = run_python([str(prog), str(tmp_path / "unused"), "-1"], tmp_path)
    assert reference.returncode == 0, describe(reference)
    for stop_at in (0, 3, 5):
        checkpoint = tmp_path / f"ck{stop_at}"
        first = run_python([str(prog), str(checkpoint), str(stop_at)], tmp_path)
        assert first.returncode == 0 and checkpoint.exists(), describe(first)
        assert "result" not in first.stdout, describe(first)   # it stopped mid-way
        second = _resume(tmp_path, checkpoint)
        assert second.returncode == 0, describe(second)
        assert first.stdout + second.stdout == reference.stdout, describe(first) + describe(second)


def test_external_signal_at_any_moment(tmp_path):
    prog = write_program(tmp_path, TIGHT_LOOP)
    reference = run_python([str(prog), str(tmp_path / "unused")], tmp_path)
    assert reference.returncode == 0, describe(reference)
    for k, delay in enumerate((0.05, 0.15, 0.3)):
        checkpoint = tmp_path / f"ck{k}"
        proc = subprocess.Popen([sys.executable, str(prog), str(checkpoint)], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n"
        time.sleep(delay)
        proc.send_signal(signal.SIGUSR1)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, (out, err)
        assert checkpoint.exists(), ("the loop ended before the signal: make it longer", out, err)
        second = _resume(tmp_path, checkpoint)
        assert second.returncode == 0, describe(second)
        assert "ready\n" + out + second.stdout == reference.stdout, describe(second)


def test_failed_snapshot_lets_the_program_go_on(tmp_path):
    prog = write_program(tmp_path, HANDLER + """
import socket
def serve():
    sock = socket.socket()
    os.kill(os.getpid(), signal.SIGUSR1)
    total = sum(range(10))
    sock.close()
    return total
print("served", serve())
""")
    proc = run_python([str(prog), str(tmp_path / "ck")], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("CANNOT ") and "'sock'" in lines[0], describe(proc)
    assert lines[1] == "served 45", describe(proc)
    assert not (tmp_path / "ck").exists()
