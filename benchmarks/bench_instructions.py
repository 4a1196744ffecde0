"""CPU work of a trivial teleport, counted in instructions (valgrind).

Wall times of tens of milliseconds move with the machine's load; the number of
instructions a process executes barely does.  This script runs, under
``valgrind --tool=callgrind``, ``python -c pass``, the plain script and the
teleport script of ``run.py`` section 1 (the source process, and the target
process on its own through a wrapper given as ``PYTELEPORT_PYTHON``), and
prints the counts in millions with the ratio to ``python -c pass``.  The
figure to read is "move beyond one start-up": source + target - plain - pass,
the work the move adds besides starting one more interpreter.

    python benchmarks/bench_instructions.py [--python PY] [--repo DIR]

``--repo`` measures the pyteleport found in another checkout (to compare
commits on the same interpreter).  The compile cache is private to the run
and warm (filled by an untimed run first); "cache off" is the first run of a
script.  Needs ``valgrind``; makes no assertions.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TELEPORT = "import pyteleport\nprint(1)\npyteleport.teleport()\nprint(2)\n"
PLAIN = "import pyteleport\nprint(1)\nprint(2)\n"


def instructions(cmd, env) -> float:
    """Millions of instructions ``cmd`` executed (its own process only)."""
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         timeout=600).stderr
    found = re.findall(r"Collected : (\d+)", out)
    if not found:
        raise RuntimeError(f"no count from valgrind for {cmd}:\n{out[-2000:]}")
    return int(found[-1]) / 1e6


def target_instructions(cmd, env, tmp) -> float:
    """Millions of instructions of the target a teleport started."""
    log = os.path.join(tmp, "target.log")
    wrapper = os.path.join(tmp, "python-under-valgrind")
    with open(wrapper, "w") as f:
        f.write(f"#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=/dev/null "
                f"{cmd[0]} \"$@\" 2>>{log}\n")
    os.chmod(wrapper, 0o755)
    if os.path.exists(log):
        os.unlink(log)
    subprocess.run(cmd, env=dict(env, PYTELEPORT_PYTHON=wrapper), stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=600, check=True)
    with open(log) as f:
        found = re.findall(r"Collected : (\d+)", f.read())
    return int(found[-1]) / 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--repo", default=os.path.dirname(HERE), help="checkout whose pyteleport is measured")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("ERROR: valgrind is not installed")
        return 0
    tmp = tempfile.mkdtemp(prefix="pyteleport-instr-")
    try:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("PYTELEPORT_NO_CACHE", None)
        env.pop("PYTELEPORT_PYTHON", None)
        env.update(PYTHONPATH=os.path.abspath(args.repo), PYTHONPYCACHEPREFIX=os.path.join(tmp, "pyc"),
                   PYTELEPORT_CACHE_DIR=os.path.join(tmp, "templates"))
        scripts = {}
        for name, text in (("teleport", TELEPORT), ("plain", PLAIN)):
            scripts[name] = os.path.join(tmp, f"{name}.py")
            with open(scripts[name], "w") as f:
                f.write(text)
        py = args.python
        for name in scripts:   # fill the bytecode and compile caches
            subprocess.run([py, scripts[name]], env=env, stdout=subprocess.DEVNULL, check=True)
        cold = dict(env, PYTELEPORT_NO_CACHE="1")
        rows = [
            ("python -c pass", instructions([py, "-c", "pass"], env)),
            ("plain script", instructions([py, scripts["plain"]], env)),
            ("teleport: source", instructions([py, scripts["teleport"]], env)),
            ("teleport: target", target_instructions([py, scripts["teleport"]], env, tmp)),
            ("teleport, cache off: source", instructions([py, scripts["teleport"]], cold)),
            ("teleport, cache off: target", target_instructions([py, scripts["teleport"]], cold, tmp)),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    m = dict(rows)
    startup = m["python -c pass"]
    rows.append(("move beyond one start-up (source + target - plain - pass)",
                 m["teleport: source"] + m["teleport: target"] - m["plain script"] - startup))
    rows.append(("same, cache off", m["teleport, cache off: source"] + m["teleport, cache off: target"]
                 - m["plain script"] - startup))
    version = subprocess.run([py, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True).stdout.strip()
    print(f"instructions (millions), Python {version}, pyteleport from {os.path.abspath(args.repo)}")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value:8.1f}  {value / startup:5.2f}x python -c pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
