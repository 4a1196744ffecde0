#!/usr/bin/env python3
"""pyteleport benchmarks: every figure next to a baseline measured in the same run.

    python benchmarks/run.py                 # full run (a few minutes)
    python benchmarks/run.py --quick         # smoke run: small sizes, few repeats
    python benchmarks/run.py --json out.json # also write the results as JSON

Sections (see benchmarks/README.md):

1. end-to-end time of a trivial script that teleports (local backend)
2. pack() (snapshot + compile + pickle) at stack depths 1, 30, 300
3. moving a big NumPy array and a big ``bytes`` object: time and peak memory
4. payload size of a trivial checkpoint
5. ``import pyteleport`` time

Every measured program runs as a subprocess of this script, with the
interpreter given by ``--python`` (default: the one running this script) and
this repository first on ``PYTHONPATH``.  The script makes no assertions and
always exits 0: a goal that is not met is reported as MISS, a benchmark that
could not run as ERROR.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MiB = 1 << 20
GiB = 1 << 30
MARK = "BENCH_JSON "


# --------------------------------------------------------------------------
# results


class Results:
    def __init__(self):
        self.rows = []

    def add(self, section, name, value, unit, *, baseline=None, baseline_name="",
            ratio=None, goal="", passed=None, note=""):
        self.rows.append(dict(section=section, name=name, value=value, unit=unit,
                              baseline=baseline, baseline_name=baseline_name, ratio=ratio,
                              goal=goal, result=_verdict(passed), note=note))

    def error(self, section, name, message):
        self.rows.append(dict(section=section, name=name, value=None, unit="",
                              baseline=None, baseline_name="", ratio=None, goal="",
                              result="ERROR", note=message))


def _verdict(passed):
    if passed is None:
        return ""
    return "PASS" if passed else "MISS"


def _fmt(value, unit):
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:,.3f} ms" if abs(value) < 1 else f"{value:,.1f} ms"
    if unit == "s":
        return f"{value:,.2f} s"
    if unit in ("MiB", "KiB"):
        return f"{value:,.1f} {unit}"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value} {unit}".strip()


def print_table(results: Results, sections) -> None:
    headers = ("figure", "value", "baseline", "ratio", "goal", "result")
    for sec_id, title in sections:
        rows = [r for r in results.rows if r["section"] == sec_id]
        if not rows:
            continue
        table = []
        notes = []
        for r in rows:
            base = ""
            if r["baseline"] is not None:
                base = f"{_fmt(r['baseline'], r['unit'])} ({r['baseline_name']})"
            elif r["baseline_name"]:
                base = r["baseline_name"]
            ratio = "" if r["ratio"] is None else (f"{r['ratio']:,.0f}x" if r["ratio"] >= 100 else f"{r['ratio']:.2f}x")
            table.append((r["name"], _fmt(r["value"], r["unit"]), base, ratio, r["goal"], r["result"]))
            if r["note"]:
                notes.append(f"  - {r['name']}: {r['note']}")
        widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]
        print()
        print(f"== {title} ==")
        print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
        print("  ".join("-" * w for w in widths))
        for t in table:
            print("  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip())
        for n in notes:
            print(n)
    print()
    goals = [r for r in results.rows if r["result"] in ("PASS", "MISS", "ERROR")]
    counts = {k: sum(r["result"] == k for r in goals) for k in ("PASS", "MISS", "ERROR")}
    print(f"summary: {counts['PASS']} PASS, {counts['MISS']} MISS, {counts['ERROR']} ERROR")


# --------------------------------------------------------------------------
# running programs


class RunFailed(Exception):
    pass


class Run:
    def __init__(self, rc, wall, stdout, stderr, peak_rss=None, child_peak_rss=None):
        self.rc = rc
        self.wall = wall
        self.stdout = stdout
        self.stderr = stderr
        self.peak_rss = peak_rss            # VmHWM of the started process, bytes
        self.child_peak_rss = child_peak_rss  # largest VmHWM among its children, bytes

    def json_line(self) -> dict:
        for line in reversed(self.stdout.splitlines()):
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RunFailed("no result line in the output" + self._tail())

    def _tail(self) -> str:
        err = self.stderr.strip().splitlines()
        return (": " + " | ".join(err[-3:])) if err else ""

    def check(self) -> "Run":
        if self.rc != 0:
            raise RunFailed(f"exit code {self.rc}" + self._tail())
        return self


def _vmhwm(pid: int):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _children(pid: int):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def run(cmd, *, env, timeout, cwd=None, stdin_data=None, watch=False, poll=0.01) -> Run:
    """Run ``cmd`` in its own process group; kill the whole group on timeout.

    The wait is a blocking ``waitpid`` (``Popen.wait`` with a timeout polls
    with sleeps of up to 50 ms, which would quantise the wall times).  With
    ``watch``, a thread samples the peak RSS (``VmHWM``) of the process and
    of its children from /proc every ``poll`` seconds until it exits.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
                                start_new_session=True)
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        peaks = {"self": None, "children": None}
        done = threading.Event()

        def sample():
            while not done.is_set():
                v = _vmhwm(proc.pid)
                if v is not None:
                    peaks["self"] = max(peaks["self"] or 0, v)
                for c in _children(proc.pid):
                    v = _vmhwm(c)
                    if v is not None:
                        peaks["children"] = max(peaks["children"] or 0, v)
                done.wait(poll)

        sampler = threading.Thread(target=sample, daemon=True) if watch else None
        if sampler:
            sampler.start()
        try:
            if stdin_data is not None:
                try:
                    proc.stdin.write(stdin_data)
                    proc.stdin.close()
                except BrokenPipeError:
                    pass
            proc.wait()
            wall = time.perf_counter() - t0
        finally:
            timer.cancel()
            done.set()
            if sampler:
                sampler.join()
            if proc.poll() is None:  # interrupted: do not leave it running
                kill()
                proc.wait()
        if timed_out.is_set():
            raise RunFailed(f"timed out after {timeout:.0f} s: {' '.join(map(str, cmd))[:120]}")
        out.seek(0)
        err.seek(0)
        return Run(proc.returncode, wall, out.read().decode("utf-8", "replace"),
                   err.read().decode("utf-8", "replace"), peaks["self"], peaks["children"])


def median(xs):
    return statistics.median(xs)


# --------------------------------------------------------------------------
# 1. end to end


TELEPORT_SCRIPT = """\
import pyteleport
print(1)
pyteleport.teleport()
print(2)
"""

PLAIN_SCRIPT = """\
import pyteleport
print(1)
print(2)
"""

# same as TELEPORT_SCRIPT, and reports how long the call took from the source
# calling it to the next statement running in the new process (CLOCK_MONOTONIC
# is system-wide on Linux, so the two processes' readings compare)
TIMED_TELEPORT_SCRIPT = """\
import time
import pyteleport
print(1)
t0 = time.monotonic()
pyteleport.teleport()
print(2, time.monotonic() - t0)
"""


def bench_e2e(ctx, res: Results):
    sec = "e2e"
    py, env, n = ctx.python, ctx.env, ctx.runs
    scripts = {}
    for name, text in (("teleport", TELEPORT_SCRIPT), ("plain", PLAIN_SCRIPT), ("timed", TIMED_TELEPORT_SCRIPT)):
        path = os.path.join(ctx.tmp, f"e2e_{name}.py")
        with open(path, "w") as f:
            f.write(text)
        scripts[name] = path
    cmds = {
        "pass": [py, "-c", "pass"],
        "plain": [py, scripts["plain"]],
        "teleport": [py, scripts["teleport"]],
        "timed": [py, scripts["timed"]],
        "cold": [py, scripts["teleport"]],
    }
    # the run's private template cache (ctx.env) is filled by the warm-up;
    # "cold" compiles every time, as the first run of a script does
    envs = {k: env for k in cmds}
    envs["cold"] = dict(env, PYTELEPORT_NO_CACHE="1")
    times = {k: [] for k in cmds}
    inside = []
    # warm-up (page cache, __pycache__, template cache), then interleave the variants
    for k in cmds:
        run(cmds[k], env=envs[k], timeout=60, cwd=ctx.tmp).check()
    for _ in range(n):
        for k, cmd in cmds.items():
            r = run(cmd, env=envs[k], timeout=60, cwd=ctx.tmp).check()
            if k in ("teleport", "plain", "cold") and r.stdout.split() != ["1", "2"]:
                raise RunFailed(f"{k} script printed {r.stdout!r}, expected '1\\n2\\n'")
            if k == "timed":
                lines = r.stdout.split()
                if len(lines) != 3 or lines[:2] != ["1", "2"]:
                    raise RunFailed(f"timed teleport script printed {r.stdout!r}")
                inside.append(float(lines[2]))
            times[k].append(r.wall)
    m = {k: median(v) * 1000 for k, v in times.items()}
    budget = m["plain"] + m["pass"] + 20
    res.add(sec, "python -c pass (interpreter start-up)", m["pass"], "ms")
    res.add(sec, "plain script (import pyteleport, 2 prints)", m["plain"], "ms")
    res.add(sec, "teleport script (local backend)", m["teleport"], "ms",
            baseline=m["plain"], baseline_name="plain script", ratio=m["teleport"] / m["plain"],
            goal=f"<= {budget:.1f} ms (plain + start-up + 20 ms)", passed=m["teleport"] <= budget)
    res.add(sec, "teleport overhead (teleport - plain)", m["teleport"] - m["plain"], "ms",
            baseline=m["pass"] + 20, baseline_name="start-up + 20 ms",
            ratio=(m["teleport"] - m["plain"]) / (m["pass"] + 20))
    res.add(sec, "teleport script, template cache off (first run)", m["cold"], "ms",
            baseline=m["plain"], baseline_name="plain script", ratio=m["cold"] / m["plain"],
            note="PYTELEPORT_NO_CACHE=1: the morphs are compiled with bytecode, as in the first "
                 "run of a script; the other teleport rows reuse the templates of the warm-up run")
    res.add(sec, "teleport() call -> next statement in new process", median(inside) * 1000, "ms",
            note="instrumented variant of the script; includes loading the snapshot machinery, "
                 "pack(), starting the target and restoring")
    ctx.raw["e2e"] = {k: [t * 1000 for t in v] for k, v in times.items()} | {"inside_ms": [t * 1000 for t in inside]}


# --------------------------------------------------------------------------
# 2. pack()


PACK_SCRIPT = """\
import json
import sys
import time
import traceback

t = time.perf_counter()
import pyteleport
import pyteleport._core.pack
import pyteleport._core.morph_build   # the compiler (bytecode), loaded by a first compile
import pyteleport.backends
IMPORT_S = time.perf_counter() - t

DEPTH = int(sys.argv[1])
REPEATS = int(sys.argv[2])


def do_pack():
    # what teleport() does: pack the frame that called it
    return pyteleport._core.pack.pack(sys._getframe(1), None)


def rec(n):
    if n > 1:
        return rec(n - 1)
    clock = time.perf_counter
    times = []
    for _ in range(REPEATS + 1):     # one call site: the first call is cold, the others warm
        t = clock()
        size = do_pack().size
        times.append(clock() - t)
    tb = []
    for _ in range(REPEATS + 1):
        t = clock()
        frames = len(traceback.extract_stack())
        tb.append(clock() - t)
    return dict(first=times[0], warm=times[1:], tb_first=tb[0], tb_warm=tb[1:],
                frames=frames, size=size)


out = rec(DEPTH)
out["import"] = IMPORT_S
# the module-state part of pack() alone (pyteleport/_state): scanning the
# modules, the adapters' save()
from pyteleport._state import modules as state_modules, registry as state_registry
state = []
for _ in range(REPEATS):
    t = time.perf_counter()
    state_modules.module_attrs({}, [])
    state_registry.collect()
    state.append(time.perf_counter() - t)
out["state"] = state
print("BENCH_JSON " + json.dumps(out))
"""


def bench_pack(ctx, res: Results):
    sec = "pack"
    path = os.path.join(ctx.tmp, "pack_bench.py")
    with open(path, "w") as f:
        f.write(PACK_SCRIPT)
    repeats = 3 if ctx.quick else 5
    imports = []
    ctx.raw["pack"] = {}
    for depth in (1, 30, 300):
        name = f"depth {depth}"
        try:
            # no template cache: the first call compiles, as in a script's first run
            d = run([ctx.python, path, str(depth), str(repeats)],
                    env=dict(ctx.env, PYTELEPORT_NO_CACHE="1"), timeout=180,
                    cwd=ctx.tmp).check().json_line()
        except RunFailed as e:
            res.error(sec, f"pack() {name}", str(e))
            continue
        ctx.raw["pack"][depth] = d
        imports.append(d["import"])
        first, warm = d["first"] * 1000, median(d["warm"]) * 1000
        tb = median(d["tb_warm"]) * 1000
        goal = "< 50 ms" if depth == 300 else ""
        passed = (lambda v: v < 50) if depth == 300 else (lambda v: None)
        label = f"{name} ({d['frames']} frames incl. module)"
        res.add(sec, f"pack() {label}, first call", first, "ms", baseline=tb,
                baseline_name="traceback.extract_stack()", ratio=first / tb if tb else None,
                goal=goal, passed=passed(first))
        res.add(sec, f"pack() {label}, repeated (median of {repeats})", warm, "ms", baseline=tb,
                baseline_name="traceback.extract_stack()", ratio=warm / tb if tb else None,
                goal=goal, passed=passed(warm))
        res.add(sec, f"payload size at {name}", d["size"] / 1024, "KiB")
        if depth == 1 and d.get("state"):
            state = median(d["state"]) * 1000
            res.add(sec, "module state within pack() (scan of every module + adapters' save)", state,
                    "ms", baseline=warm, baseline_name="pack() depth 1, repeated",
                    ratio=state / warm if warm else None,
                    note="pyteleport/_state: included in the pack() times above")
    if imports:
        res.add(sec, "loading the snapshot machinery (first teleport)", median(imports) * 1000, "ms",
                note="import of pyteleport._core.pack, pyteleport.backends and the compiler "
                     "(pyteleport._core.morph_build: bytecode), not included in the pack() times above; "
                     "a move whose templates are in the on-disk cache does not load the compiler")


# --------------------------------------------------------------------------
# 3. big transfers


MAKE_OBJ = {
    "numpy": "import numpy as np\nobj = np.arange({n} // 8, dtype=np.float64)\n",
    "bytes": "obj = bytes(range(256)) * ({n} // 256)\n",
}

CHECKSUM = """\
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024


def checksum(obj):
    n = len(obj)
    picks = [i * (n // 16) for i in range(16)] + [n - 1]
    return [float(sum(float(obj[i]) for i in picks)), int(getattr(obj, "nbytes", n))]
"""

BIG_TELEPORT = """\
import json
import time
import pyteleport
{make}
{checksum}
expected = checksum(obj)
pre = rss()
t0 = time.monotonic()
pyteleport.teleport()
got = checksum(obj)
print("BENCH_JSON " + json.dumps(dict(elapsed=time.monotonic() - t0, expected=expected, got=got, pre=pre)))
"""

BIG_BASELINE_CHILD = """\
import json
import pickle
import sys
import time
{checksum}
data = sys.stdin.buffer.read()
obj = pickle.loads(data)
del data
got = checksum(obj)
print("BENCH_JSON " + json.dumps(dict(elapsed=time.monotonic() - float(sys.argv[1]), got=got)), flush=True)
"""

BIG_BASELINE = """\
import json
import pickle
import subprocess
import sys
import time
{make}
{checksum}
print("BENCH_JSON_EXPECTED " + json.dumps(dict(expected=checksum(obj), pre=rss())), flush=True)
t0 = time.monotonic()
data = pickle.dumps(obj, protocol=5)
child = subprocess.Popen([sys.executable, {child!r}, repr(t0)], stdin=subprocess.PIPE)
child.stdin.write(data)
child.stdin.close()
sys.exit(child.wait())
"""


def bench_big(ctx, res: Results):
    sec = "big"
    runs = 1 if ctx.quick else 5
    cases = [("numpy", ctx.numpy_bytes, "NumPy float64 array"), ("bytes", ctx.bytes_bytes, "bytes object")]
    child = os.path.join(ctx.tmp, "big_baseline_child.py")
    with open(child, "w") as f:
        f.write(BIG_BASELINE_CHILD.format(checksum=CHECKSUM))
    ctx.raw["big"] = {}
    for kind, size, what in cases:
        label = f"{_size_label(size)} {what}"
        if kind == "numpy" and not ctx.has_numpy:
            res.error(sec, f"move {label}", "numpy is not installed for this interpreter")
            continue
        make = MAKE_OBJ[kind].format(n=size)
        paths = {}
        for mode, text in (("teleport", BIG_TELEPORT.format(make=make, checksum=CHECKSUM)),
                           ("baseline", BIG_BASELINE.format(make=make, checksum=CHECKSUM, child=child))):
            paths[mode] = os.path.join(ctx.tmp, f"big_{kind}_{mode}.py")
            with open(paths[mode], "w") as f:
                f.write(text)
        samples = {"teleport": [], "baseline": []}
        try:
            if not ctx.quick:
                # untimed warm-up of both programs: the first big allocations
                # after a while can be much slower (fresh pages of a VM)
                for mode in ("baseline", "teleport"):
                    run([ctx.python, paths[mode]], env=ctx.env, timeout=300, cwd=ctx.tmp).check()
            for _ in range(runs):
                for mode in ("baseline", "teleport"):
                    r = run([ctx.python, paths[mode]], env=ctx.env, timeout=300, cwd=ctx.tmp,
                            watch=True).check()
                    d = r.json_line()
                    if mode == "baseline":
                        for line in r.stdout.splitlines():
                            if line.startswith("BENCH_JSON_EXPECTED "):
                                d.update(json.loads(line.split(" ", 1)[1]))
                    if d.get("got") != d.get("expected"):
                        raise RunFailed(f"{mode}: checksum mismatch: {d.get('got')} != {d.get('expected')}")
                    samples[mode].append(dict(elapsed=d["elapsed"], wall=r.wall, source_pre=d.get("pre"),
                                              source_peak=r.peak_rss, target_peak=r.child_peak_rss))
        except RunFailed as e:
            res.error(sec, f"move {label}", str(e))
            continue
        ctx.raw["big"][kind] = dict(size=size, samples=samples)
        t = median([s["elapsed"] for s in samples["teleport"]])
        b = median([s["elapsed"] for s in samples["baseline"]])
        res.add(sec, f"{label}: teleport time (call -> object in new process)", t, "s",
                baseline=b, baseline_name="pickle.dumps(p5) + pipe + pickle.loads",
                ratio=t / b, goal="<= 1.2x baseline", passed=t <= 1.2 * b)
        tp = _max_or_none(s["source_peak"] for s in samples["teleport"])
        bp = _max_or_none(s["source_peak"] for s in samples["baseline"])
        pre = _max_or_none(s["source_pre"] for s in samples["teleport"])
        if pre is not None:
            res.add(sec, f"{label}: source RSS right before teleport()", pre / MiB, "MiB",
                    baseline=size / MiB, baseline_name="state size", ratio=pre / size)
        if tp is not None:
            res.add(sec, f"{label}: source peak RSS, teleport", tp / MiB, "MiB",
                    baseline=size / MiB, baseline_name="state size", ratio=tp / size,
                    goal="< 1.2x state size", passed=tp < 1.2 * size)
        else:
            res.error(sec, f"{label}: source peak RSS", "could not read /proc/PID/status")
        if bp is not None:
            res.add(sec, f"{label}: source peak RSS, pickle baseline", bp / MiB, "MiB",
                    baseline=size / MiB, baseline_name="state size", ratio=bp / size)
        tt = _max_or_none(s["target_peak"] for s in samples["teleport"])
        bt = _max_or_none(s["target_peak"] for s in samples["baseline"])
        if tt is not None:
            res.add(sec, f"{label}: target peak RSS, teleport", tt / MiB, "MiB",
                    baseline=size / MiB, baseline_name="state size", ratio=tt / size)
        if bt is not None:
            res.add(sec, f"{label}: target peak RSS, pickle baseline", bt / MiB, "MiB",
                    baseline=size / MiB, baseline_name="state size", ratio=bt / size)


def _max_or_none(xs):
    xs = [x for x in xs if x is not None]
    return max(xs) if xs else None


def _size_label(n: int) -> str:
    if n >= GiB and n % GiB == 0:
        return f"{n // GiB} GiB"
    return f"{n / MiB:g} MiB"


# --------------------------------------------------------------------------
# 4. payload size


CHECKPOINT_SCRIPT = """\
import pyteleport
x = 1
pyteleport.checkpoint({path!r})
"""

INSPECT_SCRIPT = """\
import json
import pickle
import sys
from pyteleport._payload import container
with open(sys.argv[1], "rb") as f:
    header, ctx, state_len = container.read_context(f)
print("BENCH_JSON " + json.dumps(dict(
    context=len(pickle.dumps(ctx, protocol=4)),
    environ=len(pickle.dumps(ctx.get("environ", {}), protocol=4)),
    state=state_len)))
"""


def bench_payload(ctx, res: Results):
    sec = "payload"
    payload = os.path.join(ctx.tmp, "trivial.ptp")
    script = os.path.join(ctx.tmp, "checkpoint_trivial.py")
    with open(script, "w") as f:
        f.write(CHECKPOINT_SCRIPT.format(path=payload))
    run([ctx.python, script], env=ctx.env, timeout=60, cwd=ctx.tmp).check()
    size = os.path.getsize(payload)
    res.add(sec, "checkpoint of a trivial script", size / 1024, "KiB", goal="< 8 KiB",
            passed=size < 8 * 1024)
    inspect = os.path.join(ctx.tmp, "inspect_payload.py")
    with open(inspect, "w") as f:
        f.write(INSPECT_SCRIPT)
    try:
        d = run([ctx.python, inspect, payload], env=ctx.env, timeout=60).check().json_line()
        res.add(sec, "  of which: context (cwd, environ, argv, sys.path, ...)", d["context"] / 1024, "KiB")
        res.add(sec, "  of which: environ alone", d["environ"] / 1024, "KiB",
                note=f"the environment of this run has {len(ctx.env)} variables, "
                     f"{sum(len(k) + len(v) + 2 for k, v in ctx.env.items()):,} bytes")
        res.add(sec, "  of which: program state (dill pickle)", d["state"] / 1024, "KiB")
        ctx.raw["payload"] = dict(size=size, **d)
    except RunFailed as e:
        res.error(sec, "payload breakdown", str(e))
    try:
        r = run([ctx.python, "-m", "pyteleport", "resume", payload], env=ctx.env, timeout=60, cwd=ctx.tmp)
        res.add(sec, "resume of that checkpoint", "ok" if r.rc == 0 else f"exit {r.rc}", "")
    except RunFailed as e:
        res.error(sec, "resume of that checkpoint", str(e))


# --------------------------------------------------------------------------
# 5. import time


def bench_import(ctx, res: Results):
    sec = "import"
    n = ctx.runs
    cum, wall_imp, wall_pass = [], [], []
    imp_cmd = [ctx.python, "-c", "import pyteleport"]
    pass_cmd = [ctx.python, "-c", "pass"]
    run(imp_cmd, env=ctx.env, timeout=60).check()  # warm-up (__pycache__)
    for _ in range(n):
        r = run([ctx.python, "-X", "importtime", "-c", "import pyteleport"], env=ctx.env, timeout=60).check()
        for line in r.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == "pyteleport":
                cum.append(int(parts[1]) / 1000)
        wall_imp.append(run(imp_cmd, env=ctx.env, timeout=60).check().wall * 1000)
        wall_pass.append(run(pass_cmd, env=ctx.env, timeout=60).check().wall * 1000)
    if not cum:
        raise RunFailed("no 'pyteleport' line in the -X importtime output")
    c = median(cum)
    res.add(sec, "import pyteleport (-X importtime, cumulative)", c, "ms", goal="< 15 ms", passed=c < 15)
    d = median(wall_imp) - median(wall_pass)
    res.add(sec, "python -c 'import pyteleport' minus python -c pass", d, "ms",
            baseline=median(wall_pass), baseline_name="python -c pass")
    ctx.raw["import"] = dict(importtime_ms=cum, wall_import_ms=wall_imp, wall_pass_ms=wall_pass)


# --------------------------------------------------------------------------


SECTIONS = [
    ("e2e", "1. End-to-end: trivial script with pyteleport.teleport() (local backend)", bench_e2e),
    ("pack", "2. pack(): snapshot + compile + pickle (baseline: traceback.extract_stack())", bench_pack),
    ("big", "3. Moving big objects (local backend)", bench_big),
    ("payload", "4. Payload size", bench_payload),
    ("import", "5. import pyteleport", bench_import),
]


class Context:
    pass


def _git_revision() -> str:
    """The commit measured, with '+changes' if pyteleport/ differs from it."""
    try:
        rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "pyteleport"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "revision unknown"
    if not rev:
        return "revision unknown"
    return f"commit {rev}" + (" +changes in pyteleport/" if dirty else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes and few repeats (smoke run)")
    ap.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    ap.add_argument("--python", default=sys.executable, help="interpreter to benchmark (default: this one)")
    ap.add_argument("--runs", type=int, help="repeats for the start-up figures (default 10, quick 3)")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="keep the environment's PYTHONDONTWRITEBYTECODE/PYTHONPYCACHEPREFIX "
                         "(default: cache bytecode in a private directory)")
    ap.add_argument("--only", help="comma-separated sections: " + ",".join(s for s, _, _ in SECTIONS))
    args = ap.parse_args(argv)

    ctx = Context()
    ctx.quick = args.quick
    ctx.python = args.python
    ctx.runs = max(1, args.runs or (3 if args.quick else 10))
    ctx.numpy_bytes = 64 * MiB if args.quick else 1 * GiB
    ctx.bytes_bytes = 16 * MiB if args.quick else 200 * MiB
    ctx.env = dict(os.environ)
    ctx.env["PYTHONPATH"] = REPO + (os.pathsep + ctx.env["PYTHONPATH"] if ctx.env.get("PYTHONPATH") else "")
    ctx.env.pop("PYTELEPORT_PYTHON", None)
    for var in ("PYTELEPORT_NO_CACHE", "PYTELEPORT_CACHE_DIR"):
        ctx.env.pop(var, None)
    ctx.raw = {}
    ctx.tmp = tempfile.mkdtemp(prefix="pyteleport-bench-")
    # a private template cache: what earlier runs compiled does not count
    ctx.env["PYTELEPORT_CACHE_DIR"] = os.path.join(ctx.tmp, "templates")
    try:
        return _main(ctx, args)
    finally:
        shutil.rmtree(ctx.tmp, ignore_errors=True)


def _main(ctx, args) -> int:
    only = set(args.only.split(",")) if args.only else None
    if not args.no_bytecode_cache:
        # measure as a user runs: with cached bytecode (a private cache
        # directory, so nothing is written into the source tree), even where
        # the environment sets PYTHONDONTWRITEBYTECODE
        ctx.env.pop("PYTHONDONTWRITEBYTECODE", None)
        ctx.env["PYTHONPYCACHEPREFIX"] = os.path.join(ctx.tmp, "pycache")

    try:
        probe = run([ctx.python, "-c", "import sys, pyteleport; print(sys.version.split()[0]); "
                     "import importlib.util as u; print(u.find_spec('numpy') is not None)"],
                    env=ctx.env, timeout=60)
    except (OSError, RunFailed) as e:
        print(f"cannot run {ctx.python}: {e}")
        return 0
    if probe.rc != 0:
        print(f"cannot import pyteleport with {ctx.python}:\n{probe.stderr}")
        return 0
    version, has_numpy = probe.stdout.split()
    ctx.has_numpy = has_numpy == "True"
    # fill the bytecode cache for everything the measured programs import
    warm = ("import json, pickle, subprocess, traceback, dill, pyteleport._core.pack, pyteleport._core.restore, "
            "pyteleport.backends.local, pyteleport.cli" + (", numpy" if ctx.has_numpy else ""))
    run([ctx.python, "-c", warm], env=ctx.env, timeout=120)
    try:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    commit = _git_revision()
    print(f"pyteleport benchmarks: {commit}, Python {version} ({ctx.python}), {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {load}, {'quick' if ctx.quick else 'full'} run, "
          f"{ctx.runs} runs per start-up figure, bytecode cache "
          f"{'as in the environment' if args.no_bytecode_cache else 'on'}")

    res = Results()
    started = time.perf_counter()
    for sec_id, title, fn in SECTIONS:
        if only and sec_id not in only:
            continue
        t = time.perf_counter()
        print(f"running {title} ...", file=sys.stderr, flush=True)
        try:
            fn(ctx, res)
        except RunFailed as e:
            res.error(sec_id, title, str(e))
        except Exception as e:  # keep going: report what broke
            res.error(sec_id, title, f"{type(e).__name__}: {e}")
            traceback.print_exc()
        print(f"  done in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    print_table(res, [(s, t) for s, t, _ in SECTIONS])
    total = time.perf_counter() - started
    print(f"total benchmark time: {total:.1f} s")
    if args.json:
        out = dict(revision=commit, python=version, interpreter=ctx.python, quick=ctx.quick, runs=ctx.runs,
                   load_average=load, bytecode_cache=not args.no_bytecode_cache,
                   machine=platform.machine(), cpus=os.cpu_count(),
                   date=time.strftime("%Y-%m-%dT%H:%M:%S"), total_s=total, rows=res.rows, raw=ctx.raw)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=str)
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    except Exception:  # never fail: the benchmark reports, it does not judge
        traceback.print_exc()
    sys.exit(0)
