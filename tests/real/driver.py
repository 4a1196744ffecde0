"""Runs a vendored real program (tests/real/programs/) unmoved, and moved at
a line event or at a timer signal (hook/realmove_hook.py does the moving in
the program's process), and tells how the moved run went.

As a script, a soak run: ``python tests/real/driver.py [--moves N] [PROGRAM ...]``
moves each program at N evenly spread line events and N timer signals and
prints one line per move.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "programs"
HOOK = HERE / "hook"
TIMEOUT = 240.0

# Refusals README's "Limits" names as impossible: C code between Python
# frames (a builtin, a C iterator or a class call driving a Python function
# or generator), coroutines, and frame objects (of this very process: the
# stdlib's logging holds one while it finds its caller).  Anything else is
# a bug.
ALLOWED_REFUSALS = {
    "native frame": re.compile(r"native frames (between Python frames )?cannot be moved"
                               r"|through native code that cannot be resumed"
                               r"|only __init__ can be resumed inside a class call"),
    # README "Limits": coroutines an asyncio loop runs, async generators
    "asyncio": re.compile(r"coroutines run by an asyncio event loop cannot be moved yet"
                          r"|async generators cannot be moved yet"),
    "frame object": re.compile(r"frame objects belong to this process and cannot be moved"),
}


# bm_*: benchmark bodies (pyperformance); ex_*: examples shipped in PyPI
# packages (SimPy); see programs/NOTICE
_PREFIXES = ("bm_", "ex_")


def programs() -> list:
    return sorted(p.stem[3:] for prefix in _PREFIXES for p in PROGRAMS.glob(f"{prefix}*.py"))


def program_path(name: str) -> Path:
    for prefix in _PREFIXES:
        path = PROGRAMS / f"{prefix}{name}.py"
        if path.exists():
            return path
    raise ValueError(f"no program {name!r} in {PROGRAMS}")


def _env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALMOVE_")}
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONPATH"] = os.pathsep.join([str(HOOK)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("PYTHONIOENCODING", "utf-8")
    env.update(extra)
    return env


def _run(cmd, cwd, env) -> subprocess.CompletedProcess:
    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        err += f"\n<killed after {TIMEOUT:g} s>"
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _read_log(path: Path) -> list:
    return path.read_text().splitlines() if path.exists() else []


@dataclass
class Run:
    """One run of a program: its processes' output, and the hook's log."""

    steps: list = field(default_factory=list)     # CompletedProcess, in order
    log: list = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return "".join(s.stdout for s in self.steps)

    @property
    def ok(self) -> bool:
        return all(s.returncode == 0 for s in self.steps)

    def entries(self, kind: str) -> list:
        return [line[len(kind) + 1:] for line in self.log if line.split(" ", 1)[0] == kind]

    @property
    def refusals(self) -> list:
        return self.entries("refused")

    @property
    def moved(self) -> bool:
        return bool(self.entries("moved"))

    def describe(self) -> str:
        out = []
        for i, s in enumerate(self.steps):
            out.append(f"--- process {i}: {' '.join(map(str, s.args))} -> exit {s.returncode}")
            out.append("stdout (last lines):\n" + "".join(s.stdout.splitlines(True)[-15:]))
            out.append("stderr:\n" + s.stderr[-3000:])
        out.append("hook log:\n" + "\n".join(self.log))
        return "\n".join(out)


def run(name: str, mode: str, action: str = "teleport", workdir: "str | Path | None" = None,
        python: str = sys.executable) -> Run:
    """Run program ``name`` with the hook in ``mode`` (see realmove_hook);
    ``action``: ``teleport`` or ``checkpoint`` (then the checkpoint is
    resumed with ``python -m pyteleport resume``, in a process of its own)."""
    workdir = Path(workdir or tempfile.mkdtemp(prefix="realmove-"))
    log = workdir / "hook.log"
    if log.exists():
        log.unlink()
    checkpoint = workdir / "move.ckpt"
    hook_action = f"checkpoint:{checkpoint}" if action == "checkpoint" else "teleport"
    env = _env({"REALMOVE_PROGRAM": str(program_path(name)), "REALMOVE_MODE": mode,
                "REALMOVE_ACTION": hook_action, "REALMOVE_LOG": str(log)})
    result = Run()
    result.steps.append(_run([python, program_path(name)], workdir, env))
    result.log = _read_log(log)
    if action == "checkpoint" and result.moved and checkpoint.exists():
        result.steps.append(_run([python, "-m", "pyteleport", "resume", checkpoint], workdir, _env({})))
    return result


def run_signal(name: str, delay: float, action: str, workdir) -> Run:
    """``run`` at a timer signal after ``delay`` CPU seconds; CPU time is
    counted in scheduler ticks and varies: if the program ended first, again
    with an earlier signal (at most 8 times: a loaded machine counts fewer ticks)."""
    for attempt in range(8):
        moved = run(name, f"signal:{delay:.6f}", action, workdir=workdir)
        if moved.moved or "ended" not in moved.log:
            break
        delay /= 2
    return moved


def spread(total: int, count: int) -> list:
    """``count`` evenly spread points of 1..total."""
    return sorted({max(1, min(total, round(total * (i + 0.5) / count))) for i in range(count)})


def signal_delay(reference: Run, index: int, count: int) -> float:
    """CPU seconds after which the ``index``-th of ``count`` timer signals
    comes: evenly spread over 70 % of what the program runs after its
    imports (moves during imports are not part of this suite)."""
    start = float(reference.entries("main-cpu")[0])
    total = float(reference.entries("cpu")[0])
    return round(start + (total - start) * 0.7 * (index + 0.5) / count, 6)


def check(reference: Run, moved: Run) -> list:
    """What is wrong with ``moved`` (empty: nothing).  A run whose every
    move was refused for a reason README says is impossible is right."""
    problems = []
    for reason in moved.refusals:
        if not any(p.search(reason) for p in ALLOWED_REFUSALS.values()):
            problems.append(f"refused for a reason README does not list as impossible: {reason}")
    if not moved.ok:
        problems.append("a process failed")
    if moved.moved:
        if len(moved.steps) == 2:     # checkpoint: the lines after the move come from the resume
            pass
        else:
            targets = moved.entries("target")
            source = moved.entries("moved")[0].split()[0]
            if not targets or targets[0] == source:
                problems.append(f"no new process took over (moved from {source}, targets {targets})")
    elif not moved.entries("gave-up") and not moved.refusals:
        problems.append("the program ended before it was moved")
    elif not moved.entries("gave-up") and "ended" not in moved.log:
        problems.append("refused, then neither moved nor ended (tries left)")
    ref_lines, lines = reference.stdout.splitlines(), moved.stdout.splitlines()
    if lines != ref_lines:
        for i, (a, b) in enumerate(zip(ref_lines, lines)):
            if a != b:
                problems.append(f"output differs at line {i + 1}: expected {a!r}, got {b!r}")
                break
        else:
            problems.append(f"output has {len(lines)} lines, the unmoved run {len(ref_lines)}")
    return problems


def refusal_category(reason: str) -> "str | None":
    for name, pattern in ALLOWED_REFUSALS.items():
        if pattern.search(reason):
            return name
    return None


def _soak(argv) -> int:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=int(os.environ.get("PYTELEPORT_REAL_MOVES") or 20))
    parser.add_argument("programs", nargs="*", default=programs())
    args = parser.parse_args(argv)
    failures = 0
    for name in args.programs:
        with tempfile.TemporaryDirectory(prefix="realmove-") as tmp:
            reference = run(name, "none", workdir=tmp)
            lines = int(run(name, "count", workdir=tmp).entries("lines")[0])
            points = [("line", k) for k in spread(lines, args.moves)]
            points += [("signal", signal_delay(reference, i, args.moves)) for i in range(args.moves)]
            for i, (kind, at) in enumerate(points):
                action = ("checkpoint", "teleport")[i % 2]
                moved = (run(name, f"line:{at}", action, workdir=tmp) if kind == "line"
                         else run_signal(name, at, action, tmp))
                problems = check(reference, moved)
                failures += bool(problems)
                status = "FAIL " + "; ".join(problems) if problems else "ok"
                where = (moved.entries("moved") or ["-"])[0]
                print(f"{name} {kind}:{at} {action}: {status} [moved {where}; "
                      f"{len(moved.refusals)} refusal(s)]", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(_soak(sys.argv[1:]))
