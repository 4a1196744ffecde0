#!/usr/bin/env python3
"""The ssh backend's figures, each against a baseline measured in the same run.

    python benchmarks/bench_ssh.py           # full run (1 GiB array; a few minutes)
    python benchmarks/bench_ssh.py --quick   # smoke run: 64 MiB, few repeats

It starts a private OpenSSH server on 127.0.0.1 (``tests/sshd.py``: Debian's
``/usr/sbin/sshd``, keys in a temporary folder) and measures, with the
interpreter running this script (``--python`` for another), this
repository first on ``PYTHONPATH`` and bytecode caching on (in a private
folder, as an installation has it):

1. **Trivial teleport.**  A script that imports pyteleport and calls
   ``teleport(backend="ssh")``; the program ends right after.  Figure: from
   the call to the end of the source process (the target has ended too), and
   from the call to the first statement after it on the target.  Baseline:
   ``ssh HOST PYTHON -c pass`` with the same interpreter.  Goal: ≤ 1.3×.
2. **Throughput.**  A script holding a NumPy array of SIZE bytes teleports;
   the figure runs from the call until the target has checked the array.
   Baseline: ``cat FILE | ssh HOST 'cat > /dev/null'`` for a file of the same
   size (in the page cache).  Goal: ≤ 1.3× the baseline's time.

Both are measured over two logins: ``plain`` (``/bin/sh`` runs the command:
the cheapest login, so pyteleport's own cost shows most) and ``login`` (the
account's login shell with its rc files, as users have it).  Each figure is
the median of the runs; runs alternate between the figure and its baseline.
The script makes no assertions and exits 0; an unmet goal prints MISS.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))

from sshd import SshServer  # noqa: E402  (tests/sshd.py)

MiB = 1 << 20
GOAL = 1.3

TRIVIAL = """\
import json, os, sys, time
import pyteleport
t0 = time.monotonic()
pyteleport.teleport(backend="ssh", **json.loads(os.environ["BENCH_OPTIONS"]))
print("RESUMED", time.monotonic() - t0, t0, flush=True)
"""

BIG = """\
import json, os, sys, time
import numpy as np
import pyteleport
a = np.ones(int(sys.argv[1]) // 8)
a[::4096] = np.arange(a[::4096].size)
t0 = time.monotonic()
pyteleport.teleport(backend="ssh", **json.loads(os.environ["BENCH_OPTIONS"]))
ok = a.nbytes == int(sys.argv[1]) // 8 * 8 and a[4096] == 1.0 and a[-1] == 1.0
print("RESUMED", time.monotonic() - t0, ok, flush=True)
"""


_PYCACHE = tempfile.mkdtemp(prefix="bench-ssh-pycache-")


def _env(python_options: str) -> dict:
    env = dict(os.environ)
    # bytecode caching on, as in an installation, in a private folder
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["BENCH_OPTIONS"] = python_options
    return env


def _wall(cmd, env=None, stdin=None, shell=False):
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdin=stdin, capture_output=True, text=True, shell=shell,
                          timeout=600)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd if isinstance(cmd, str) else ' '.join(map(str, cmd))} -> "
                           f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return wall, proc.stdout


def _resumed(stdout: str):
    for line in stdout.splitlines():
        if line.startswith("RESUMED"):
            return line.split()[1:]
    raise RuntimeError(f"no RESUMED line in {stdout!r}")


def _row(name, value, base, base_name, unit="s"):
    ratio = value / base
    verdict = "PASS" if ratio <= GOAL else "MISS"
    fmt = (lambda v: f"{v * 1000:,.0f} ms") if unit == "s" else (lambda v: f"{v:,.0f} {unit}")
    print(f"  {name:<44} {fmt(value):>10}   {base_name:<40} {fmt(base):>10}   {ratio:5.2f}x  "
          f"goal <= {GOAL}x  {verdict}")
    return verdict


def bench_trivial(server, python, host, runs, script_dir):
    import json
    prog = os.path.join(script_dir, "trivial.py")
    with open(prog, "w") as f:
        f.write(TRIVIAL)
    env = _env(json.dumps(server.options(host)))
    base_cmd = ["ssh", "-F", str(server.config), host, python, "-c", "pass"]
    _wall([python, prog], env=env)          # warm-up (page cache, .pyc)
    _wall(base_cmd)
    total, resumed, call_to_end, base = [], [], [], []
    for _ in range(runs):
        wall, out = _wall([python, prog], env=env)
        end = time.monotonic()          # CLOCK_MONOTONIC: shared with the children
        elapsed, t0 = map(float, _resumed(out)[:2])
        resumed.append(elapsed)
        call_to_end.append(end - t0)
        total.append(wall)
        base.append(_wall(base_cmd)[0])
    verdicts = [
        _row(f"[{host}] teleport() call -> source exits", statistics.median(call_to_end),
             statistics.median(base), f"ssh {host} PYTHON -c pass"),
    ]
    print(f"    (call -> next statement on the target: {statistics.median(resumed) * 1000:,.0f} ms; "
          f"whole script, with its start-up and imports: {statistics.median(total) * 1000:,.0f} ms)")
    return verdicts


def bench_big(server, python, host, size, runs, script_dir):
    import json
    prog = os.path.join(script_dir, "big.py")
    with open(prog, "w") as f:
        f.write(BIG)
    env = _env(json.dumps(server.options(host)))
    blob = os.path.join(script_dir, "blob")
    with open(blob, "wb") as f:
        chunk = os.urandom(MiB)
        for _ in range(size // MiB):
            f.write(chunk)
    base_cmd = f"cat {blob} | ssh -F {server.config} {host} 'cat > /dev/null'"
    _wall(base_cmd, shell=True)             # warm-up: the file in the page cache
    _wall([python, prog, str(size)], env=env)
    moved, base = [], []
    for _ in range(runs):
        _, out = _wall([python, prog, str(size)], env=env)
        seconds, ok = _resumed(out)
        if ok != "True":
            raise RuntimeError("the array arrived wrong")
        moved.append(float(seconds))
        base.append(_wall(base_cmd, shell=True)[0])
    os.unlink(blob)
    m, b = statistics.median(moved), statistics.median(base)
    verdict = _row(f"[{host}] {size // MiB} MiB array: call -> checked", m, b,
                   f"cat {size // MiB} MiB | ssh {host} cat>/dev/null")
    print(f"    (throughput: teleport {size / m / MiB:,.0f} MiB/s, baseline {size / b / MiB:,.0f} MiB/s)")
    return [verdict]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small array, few repeats")
    ap.add_argument("--python", default=sys.executable, help="interpreter to measure")
    ap.add_argument("--runs", type=int, default=None, help="repeats per figure")
    ap.add_argument("--size-mib", type=int, default=None, help="array size (default 1024, quick 64)")
    args = ap.parse_args(argv)
    runs = args.runs or (3 if args.quick else 7)
    size = (args.size_mib or (64 if args.quick else 1024)) * MiB
    big_runs = max(1, runs // 2) if not args.quick else 2
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "?"
    print(f"pyteleport ssh benchmarks: commit {commit} (work tree), {args.python} "
          f"({subprocess.run([args.python, '-c', 'import sys; print(sys.version.split()[0])'], capture_output=True, text=True).stdout.strip()}), "
          f"load {os.getloadavg()[0]:.2f}, {'quick' if args.quick else 'full'} run")
    server = SshServer().start()
    verdicts = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ssh-") as work:
            print("\n== 1. trivial teleport over ssh to 127.0.0.1 ==")
            for host in ("plain", "testhost"):
                try:
                    verdicts += bench_trivial(server, args.python, host, runs, work)
                except Exception as e:   # report, go on
                    print(f"  [{host}] ERROR: {e}")
                    verdicts.append("ERROR")
            print(f"\n== 2. throughput of a {size // MiB} MiB NumPy array over ssh ==")
            for host in ("plain",):
                try:
                    verdicts += bench_big(server, args.python, host, size, big_runs, work)
                except Exception as e:
                    print(f"  [{host}] ERROR: {e}")
                    verdicts.append("ERROR")
    finally:
        server.stop()
        import shutil
        shutil.rmtree(server.dir, ignore_errors=True)
        shutil.rmtree(_PYCACHE, ignore_errors=True)
    print(f"\nsummary: {verdicts.count('PASS')} PASS, {verdicts.count('MISS')} MISS, "
          f"{verdicts.count('ERROR')} ERROR")
    return 0


if __name__ == "__main__":
    sys.exit(main())
