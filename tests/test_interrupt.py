"""Snapshots taken where a signal interrupted the program (pyteleport._core.interrupt):
the resumed program must finish exactly as an uninterrupted run would."""

import signal
import subprocess
import sys
import time

from progs import describe, run_python, write_program

HANDLER = """\
import os, signal, sys
from pyteleport._core import interrupt as _interrupt

CHECKPOINT = sys.argv[1]


def on_signal(signum, frame):
    def action(payload):
        with open(CHECKPOINT, "wb") as f:
            payload.write_to(f, sign=True)   # a file: signed, as checkpoint() writes it
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


def assert_each_snapshot_resumes(tmp_path, prog, reference, points) -> None:
    """``prog CHECKPOINT AT`` snapshots itself at point AT and exits: for each
    point, what it printed plus what the resumed checkpoint prints is the
    reference run's output."""
    for at in points:
        checkpoint = tmp_path / f"ck{at}"
        first = run_python([str(prog), str(checkpoint), str(at)], tmp_path)
        assert first.returncode == 0 and checkpoint.exists(), describe(first)
        second = _resume(tmp_path, checkpoint)
        assert second.returncode == 0, describe(second)
        assert first.stdout + second.stdout == reference.stdout, describe(second)


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


def test_signal_in_a_dunder_a_builtin_called_is_refused(tmp_path):
    """A signal landing in ``__instancecheck__``, which ``isinstance`` (C)
    called: refused as native code between frames (3.11 makes the call in a
    specialised PRECALL, once warmed up), and the program goes on."""
    prog = write_program(tmp_path, HANDLER + """
class Meta(type):
    def __instancecheck__(cls, obj):
        if obj == 30:
            os.kill(os.getpid(), signal.SIGUSR1)
        answer = obj % 3 == 0       # the handler runs at the latest here
        return answer


class Third(metaclass=Meta):
    pass


count = 0
for i in range(60):
    if isinstance(i, Third):
        count += 1
print("thirds", count)
""")
    proc = run_python([str(prog), str(tmp_path / "ck")], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("CANNOT ") and "native" in lines[0], describe(proc)
    assert "isinstance" in lines[0] or "a builtin" in lines[0], describe(proc)
    assert lines[1] == "thirds 20", describe(proc)
    assert not (tmp_path / "ck").exists()


# A signal landing in __eq__: called on the operands of `==` it gives the
# comparison's result (moved); called on the items of two tuples compared,
# or of a list searched with `in`, it is only part of the work (refused:
# resuming it as the result would change what the program computes).
SPECIAL_METHOD = HANDLER + """
class P:
    def __init__(self, v):
        self.v = v

    def __eq__(self, other):
        if self.v == 7 and other.v == 7 and WHERE[0] == sys.argv[2]:
            os.kill(os.getpid(), signal.SIGUSR1)
        same = self.v == other.v
        return same

    def __add__(self, other):
        if self.v == 7 and WHERE[0] == sys.argv[2]:
            os.kill(os.getpid(), signal.SIGUSR1)
        total = self.v + other.v
        return P(total)


WHERE = ["direct"]
print("direct", [P(i) == P(i % 4 + 4) for i in range(9)])
WHERE[0] = "tuple"
print("tuples", [(P(i), i % 2) == (P(i), 0) for i in range(9)])
WHERE[0] = "contains"
items = [P(i) for i in range(9)]
print("contains", P(7) in items[:7], P(7) in items)
WHERE[0] = "add"
print("sums", [(P(i) + P(1)).v for i in range(9)])
"""


def test_signal_in_a_special_method_moves_only_where_it_gives_the_result(tmp_path):
    prog = write_program(tmp_path, SPECIAL_METHOD)
    reference = run_python([str(prog), str(tmp_path / "unused"), "none"], tmp_path)
    assert reference.returncode == 0, describe(reference)
    for where, moves in (("direct", True), ("tuple", False), ("contains", False), ("add", True)):
        checkpoint = tmp_path / f"ck-{where}"
        first = run_python([str(prog), str(checkpoint), where], tmp_path)
        assert first.returncode == 0, describe(first)
        assert checkpoint.exists() == moves, describe(first)
        if moves:
            second = _resume(tmp_path, checkpoint)
            assert second.returncode == 0, describe(second)
            assert first.stdout + second.stdout == reference.stdout, describe(second)
        else:
            cannot = [line for line in first.stdout.splitlines() if line.startswith("CANNOT")]
            assert len(cannot) == 1 and "__eq__" in cannot[0] and "native code" in cannot[0], describe(first)
            rest = [line for line in first.stdout.splitlines() if not line.startswith("CANNOT")]
            assert rest == reference.stdout.splitlines(), describe(first)


# A function long enough that its instructions need EXTENDED_ARG prefixes
# (300 constants, a loop body longer than 255 code units).  The snapshot is
# taken at an opcode event on such a prefix where the interpreter reports
# one (3.9-3.11 for every prefix, 3.15 after a signal), else on a prefixed
# instruction: the prefixed instruction has not run yet, and the one before
# it has (3.15 restarted a loop over a list; 3.9-3.11 ran the previous
# instruction again).
PREFIXED = """\
import opcode, os, sys
from pyteleport._core import pack as _pack

CHECKPOINT, AT = sys.argv[1], int(sys.argv[2])
PREFIX = opcode.opmap["EXTENDED_ARG"]
body = "\\n".join(f"        acc = (acc * 31 + item + {1000 + k}) % 1000003" for k in range(300))
exec(f"def work(items):\\n    acc = 0\\n    for item in items:\\n{body}\\n    return acc\\n")
events = [0]


def on_call(frame, event, arg):
    if frame.f_code.co_name == "work":
        frame.f_trace = on_opcode
        frame.f_trace_opcodes = True
        sys.settrace(on_call)       # 3.12+: opcode events start with tracing set again
        return on_opcode
    return None


def on_opcode(frame, event, arg):
    if event != "opcode":
        return on_opcode
    code, lasti = frame.f_code, frame.f_lasti
    prefixed = code.co_code[lasti] == PREFIX or (lasti >= 2 and code.co_code[lasti - 2] == PREFIX)
    if AT and prefixed:
        events[0] += 1
        if events[0] == AT:
            sys.settrace(None)
            frame.f_trace = None
            payload = _pack.pack(frame, None, at_instruction=True)
            with open(CHECKPOINT, "wb") as f:
                payload.write_to(f, sign=True)
            os._exit(0)
    return on_opcode


sys.settrace(on_call)
print("total", work([3, 1, 4, 1, 5]), flush=True)
"""


def test_snapshot_at_an_extended_arg_prefix_resumes_identically(tmp_path):
    prog = write_program(tmp_path, PREFIXED)
    reference = run_python([str(prog), str(tmp_path / "unused"), "0"], tmp_path)
    assert reference.returncode == 0 and reference.stdout.startswith("total "), describe(reference)
    assert_each_snapshot_resumes(tmp_path, prog, reference, (1, 2, 7, 40, 90))


# a module whose import is under way when the signal lands: its body signals
# the program once (the marker file keeps the reference run and the target,
# which imports it again, from signalling)
SIGNALLING_MODULE = """\
import os, signal
A = 20
if not os.path.exists("signalled"):
    open("signalled", "w").close()
    os.kill(os.getpid(), signal.SIGUSR1)
from helper_b import B          # more importing after the signal
import json                     # a standard module loaded after the signal
C = A + B + len(json.dumps([1]))
"""

DURING_IMPORT = HANDLER + """
print("before the import", flush=True)
def load():
    import slowmod
    return slowmod.C
value = load()
print("imported", value, flush=True)
print("end", sum(range(value)), flush=True)
"""


def test_signal_during_an_import_snapshots_once_it_is_over(tmp_path):
    (tmp_path / "slowmod.py").write_text(SIGNALLING_MODULE)
    (tmp_path / "helper_b.py").write_text("B = 3\n")
    prog = write_program(tmp_path, DURING_IMPORT)
    (tmp_path / "signalled").touch()
    reference = run_python([str(prog), str(tmp_path / "unused")], tmp_path)
    assert reference.returncode == 0 and "imported 26" in reference.stdout, describe(reference)
    (tmp_path / "signalled").unlink()
    checkpoint = tmp_path / "ck"
    first = run_python([str(prog), str(checkpoint)], tmp_path)
    assert first.returncode == 0 and checkpoint.exists(), describe(first)
    assert first.stdout == "before the import\n", describe(first)   # saved right after the import
    second = _resume(tmp_path, checkpoint)
    assert second.returncode == 0, describe(second)
    assert first.stdout + second.stdout == reference.stdout, describe(first) + describe(second)


def test_signal_in_a_program_that_blocks_the_pickle_accelerator(tmp_path):
    # as pyperformance's pickle benchmarks do with --pure-python
    prog = write_program(tmp_path, "import sys\nsys.modules['_pickle'] = None\n" + SELF_SIGNALLED
                         + "import pickle\nprint(pickle.Pickler.__module__)\n")
    reference = run_python([str(prog), str(tmp_path / "unused"), "-1"], tmp_path)
    assert reference.returncode == 0 and reference.stdout.endswith("pickle\n"), describe(reference)
    checkpoint = tmp_path / "ck"
    first = run_python([str(prog), str(checkpoint), "3"], tmp_path)
    assert first.returncode == 0 and checkpoint.exists(), describe(first)
    second = _resume(tmp_path, checkpoint)
    assert second.returncode == 0, describe(second)
    # the resumed program pickles with the C pickler again: only that line differs
    assert (first.stdout + second.stdout).replace("_pickle\n", "pickle\n") == reference.stdout, (
        describe(first) + describe(second))


def test_half_imported_module_is_a_refusal_or_a_snapshot(tmp_path):
    # the import system's state while typing's body runs: the module in
    # sys.modules, empty; whatever packing then needs from it, the program goes on
    prog = write_program(tmp_path, HANDLER + """
import types
real = sys.modules.pop("typing", None)
sys.modules["typing"] = types.ModuleType("typing")
os.kill(os.getpid(), signal.SIGUSR1)
sys.modules["typing"] = real
print("carried on", flush=True)
""")
    checkpoint = tmp_path / "ck"
    first = run_python([str(prog), str(checkpoint)], tmp_path)
    assert first.returncode == 0 and "Traceback" not in first.stderr, describe(first)
    if checkpoint.exists():
        second = _resume(tmp_path, checkpoint)
        assert second.returncode == 0 and second.stdout == "carried on\n", describe(second)
    else:
        assert first.stdout.startswith("CANNOT ") and first.stdout.endswith("\ncarried on\n"), describe(first)


PROTECTED = """\
import os, signal, sys
import pyteleport.slurm

in_handler = []

def audit(event, args):
    # an import made while the signal handler runs (not later, at the snapshot)
    if event == "import" and any(
            f.f_code is pyteleport.slurm._on_signal.__code__ for f in _frames()):
        in_handler.append(args[0])

def _frames():
    f = sys._getframe()
    while f is not None:
        yield f
        f = f.f_back

sys.addaudithook(audit)
pyteleport.slurm.arm("USR1", sys.argv[1], "0", max_restarts=0, grace=60, restarts=0,
                     task=None, detached=True)
print("armed", flush=True)
def load():
    import slowmod
    return slowmod.C
value = load()
print("imported", value, in_handler, flush=True)
"""


def test_slurm_handler_imports_nothing_and_defers_past_the_import(tmp_path):
    (tmp_path / "slowmod.py").write_text(SIGNALLING_MODULE)
    (tmp_path / "helper_b.py").write_text("B = 3\n")
    prog = write_program(tmp_path, PROTECTED)
    stage = tmp_path / "stage"
    stage.mkdir()
    first = run_python([str(prog), str(stage)], tmp_path)
    # max_restarts=0: the snapshot is written, no job continues it (exit 1)
    assert first.returncode == 1 and (stage / "ckpt.0").exists(), describe(first)
    assert first.stdout == "armed\n", describe(first)
    second = _resume(tmp_path, stage / "ckpt.0")
    assert second.returncode == 0 and second.stdout == "imported 26 []\n", describe(second)


# A generator tree walked with yield from (pyperformance's bm_generators):
# the snapshot is asked for on the frame of the AT-th generator created,
# before it starts, so it is taken at its first instruction (3.10: its
# GEN_START, with the value it is started with still on its stack).
GENERATOR_START = """\
import os, sys
from pyteleport._core import interrupt as _interrupt

CHECKPOINT, AT = sys.argv[1], int(sys.argv[2])
created = [0]


def action(payload):
    with open(CHECKPOINT, "wb") as f:
        payload.write_to(f, sign=True)
    os._exit(0)


def on_error(exc):
    print("CANNOT", exc, flush=True)


def walk(lo, hi):
    if hi - lo <= 1:
        yield lo
        return
    mid = (lo + hi) // 2
    for half in ((lo, mid), (mid, hi)):
        child = walk(*half)
        created[0] += 1
        if created[0] == AT:
            _interrupt.at_next_instruction(child.gi_frame, action, on_error)
        yield from child


total = 0
for value in walk(0, 16):
    total = total * 3 + value
    print("value", value, total, flush=True)
print("end", total)
"""


def test_snapshot_at_a_generator_start_resumes_identically(tmp_path):
    prog = write_program(tmp_path, GENERATOR_START)
    reference = run_python([str(prog), str(tmp_path / "unused"), "0"], tmp_path)
    assert reference.returncode == 0 and reference.stdout.endswith("\n"), describe(reference)
    # before the fix, 3.10 looped forever in the resumed process
    assert_each_snapshot_resumes(tmp_path, prog, reference, (1, 2, 5, 17, 30))


# coroutines driven by send() from a loop (warm: 3.11 specialises the call
# into a PRECALL that calls send itself), a signal landing in the awaited one
COROUTINES = HANDLER + """
AT = int(sys.argv[2])


class Tick:
    def __await__(self):
        return (yield 1)


async def leaf(n, stop_at):
    total = 0
    for i in range(n):
        for k in range(2000):
            total = (total * 7 + k) % 10007
        if i == stop_at:
            os.kill(os.getpid(), signal.SIGUSR1)
        await Tick()
        print("leaf", i, total, flush=True)
    return total


async def top(stop_at):
    return await leaf(30, stop_at) + await leaf(5, -1)


coro = top(AT)
while True:
    try:
        coro.send(None)
    except StopIteration as stop:
        print("result", stop.value, flush=True)
        break
"""


def test_signal_in_a_coroutine_driven_by_send_resumes_identically(tmp_path):
    prog = write_program(tmp_path, COROUTINES)
    reference = run_python([str(prog), str(tmp_path / "unused"), "-1"], tmp_path)
    assert reference.returncode == 0 and reference.stdout.endswith("\n"), describe(reference)
    assert_each_snapshot_resumes(tmp_path, prog, reference, (0, 3, 17, 29))
