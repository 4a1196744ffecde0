"""Differential test harness for the scenario programs in tests/scenarios/.

A scenario is run once per mode (see ``scenarios/_scenario.py``):

* ``none``        reference run, the program never moves;
* ``teleport``    ``pyteleport.teleport()`` at every ``move()``;
* ``checkpoint``  ``pyteleport.checkpoint()`` at every ``move()``; the source
  process stops after writing the payload and the harness resumes it with
  ``python -m pyteleport resume PATH`` (again and again while the resumed
  program writes new checkpoints);
* a comma separated mix such as ``teleport,checkpoint`` (n-th move uses the
  n-th entry).

``assert_differential`` then checks that the program printed exactly the same
lines in every mode (ignoring the ``[pid]`` prefix), exited with the same code,
and that the lines between two ``--move--`` markers came from one process,
a different one for every stretch when the program really moved.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
MARKER = "--move--"
DEFAULT_MODES = ("none", "teleport", "checkpoint")
PID_LINE = re.compile(r"^\[(\d+)\] ?(.*)$")

TIMEOUT = 60.0
# Once a few runs have hung, later runs get a shorter timeout so that a
# package that hangs on every move cannot blow the CI time budget.
SHORT_TIMEOUT = 15.0
_timeouts_seen = 0


def _timeout() -> float:
    return TIMEOUT if _timeouts_seen < 2 else SHORT_TIMEOUT


@dataclass
class Step:
    """One process started by the harness."""

    cmd: list
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Result:
    mode: str
    steps: list = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return "".join(s.stdout for s in self.steps)

    @property
    def stderr(self) -> str:
        """stderr of the last process (the one that ran the end of the program)."""
        return self.steps[-1].stderr if self.steps else ""

    @property
    def returncode(self) -> int:
        return self.steps[-1].returncode

    def describe(self) -> str:
        out = [f"=== mode {self.mode!r}: {len(self.steps)} process(es)"]
        for i, s in enumerate(self.steps):
            out.append(f"--- step {i}: {' '.join(map(str, s.cmd))} -> exit {s.returncode}")
            out.append("stdout:\n" + _indent(s.stdout))
            out.append("stderr:\n" + _indent(s.stderr[-4000:]))
        return "\n".join(out)


def _indent(text: str) -> str:
    return "".join("    " + line + "\n" for line in text.splitlines()) or "    <empty>\n"


def _env(mode: str, checkpoint: str | None, extra_env: Mapping[str, str] | None) -> dict:
    env = dict(os.environ)
    for key in ("_SCENARIO_MOVE_COUNT", "SCENARIO_CHECKPOINT"):
        env.pop(key, None)
    env["SCENARIO_MODE"] = mode
    if checkpoint is not None:
        env["SCENARIO_CHECKPOINT"] = checkpoint
    env.setdefault("PYTHONIOENCODING", "utf-8")
    if extra_env:
        env.update(extra_env)
    return env


def run_command(cmd, *, env=None, stdin: str | None = None, cwd=None, timeout: float | None = None):
    """Run ``cmd`` and return a CompletedProcess (text mode, output captured).

    The process gets its own process group, so that on a timeout the program
    and whatever it spawned (a teleported process) are killed together.
    """
    global _timeouts_seen
    timeout = _timeout() if timeout is None else timeout
    cmd = [str(c) for c in cmd]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=None if cwd is None else str(cwd),
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(stdin if stdin is not None else "", timeout=timeout)
    except subprocess.TimeoutExpired:
        _timeouts_seen += 1
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            proc.kill()
        out, err = proc.communicate()
        raise AssertionError(
            f"timed out after {timeout:.0f}s: {' '.join(cmd)}\n"
            f"stdout so far:\n{_indent(out or '')}stderr so far:\n{_indent(err or '')}"
        ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _exec(cmd: list, env: dict, stdin: str | None, cwd: Path) -> Step:
    proc = run_command(cmd, env=env, stdin=stdin, cwd=cwd)
    return Step(list(cmd), proc.returncode, proc.stdout, proc.stderr)


def _resolve(path) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else SCENARIOS / p


def run_scenario(
    path,
    mode: str,
    args: Sequence[str] = (),
    stdin: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    python_args: Sequence[str] = (),
    workdir: Path | None = None,
    cwd: Path | None = None,
) -> Result:
    """Run one scenario in one mode and return everything it printed.

    ``path`` is a file in tests/scenarios (or an absolute path), or None when
    ``python_args`` already says what to run (``-m pkg`` or ``-c CODE``).
    Checkpoint modes write the payload into ``workdir`` (a fresh temporary
    directory when not given) and resume it until no new payload appears.
    """
    cwd = Path(cwd) if cwd is not None else SCENARIOS
    script = _resolve(path)
    cmd = [sys.executable, *python_args, *([script] if script else []), *args]
    result = Result(mode)
    if "checkpoint" not in mode.split(","):
        result.steps.append(_exec(cmd, _env(mode, None, extra_env), stdin, cwd))
        return result

    own_dir = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="scen-ck-")) if own_dir else Path(workdir)
    try:
        payload = workdir / "scenario.payload"
        env = _env(mode, str(payload), extra_env)
        result.steps.append(_exec(cmd, env, stdin, cwd))
        n = 0
        while payload.exists():
            n += 1
            assert n <= 10, "the program keeps writing checkpoints\n" + result.describe()
            assert result.steps[-1].returncode == 0, (
                "the process that wrote a checkpoint should stop with exit code 0\n"
                + result.describe()
            )
            taken = workdir / f"scenario.payload.{n}"
            os.replace(payload, taken)
            resume = [sys.executable, "-m", "pyteleport", "resume", taken]
            result.steps.append(_exec(resume, env, stdin, cwd))
        return result
    finally:
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------
# analysis


@dataclass
class Parsed:
    lines: list  # output lines without the pid prefix (markers kept)
    segments: list  # per stretch between markers: list of pids of its lines
    markers: int


def parse_output(stdout: str) -> Parsed:
    lines, segments = [], [[]]
    for raw in stdout.splitlines():
        if raw == MARKER:
            lines.append(MARKER)
            segments.append([])
            continue
        m = PID_LINE.match(raw)
        if m:
            segments[-1].append(int(m.group(1)))
            lines.append(m.group(2))
        else:
            segments[-1].append(None)
            lines.append(raw)
    return Parsed(lines, segments, len(segments) - 1)


def last_stderr_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def check_pids(mode: str, parsed: Parsed) -> str | None:
    """Return a problem description, or None when the pid structure is right."""
    if mode == "none":
        pids = {p for seg in parsed.segments for p in seg}
        if len(pids) != 1:
            return f"reference run printed from pids {sorted(pids, key=str)}, expected one"
        return None
    seen = set()
    for i, seg in enumerate(parsed.segments):
        pids = set(seg)
        if not pids:
            continue
        if None in pids:
            return f"stretch {i} has lines without a [pid] prefix"
        if len(pids) != 1:
            return f"stretch {i} (after {i} move(s)) was printed by several processes {sorted(pids)}"
        (pid,) = pids
        if pid in seen:
            return f"stretch {i} was printed by pid {pid}, which already printed an earlier stretch: the program did not move"
        seen.add(pid)
    return None


def _diff(a: Iterable[str], b: Iterable[str], name_a: str, name_b: str) -> str:
    return "\n".join(difflib.unified_diff(list(a), list(b), name_a, name_b, lineterm=""))


def assert_differential(
    name=None,
    *,
    args: Sequence[str] = (),
    stdin: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    python_args: Sequence[str] = (),
    modes: Sequence[str] = DEFAULT_MODES,
    returncode: int = 0,
    exception_line: str | bool | None = None,
    moves: int | None = 1,
) -> dict:
    """Run scenario ``name`` in every mode and compare the runs.

    ``args`` items may contain ``{tmp}``: it is replaced by a fresh directory
    per mode.  ``exception_line``: True to require that the last stderr line is
    the same in every mode, or the exact expected line.  ``moves``: expected
    number of ``--move--`` markers (None: at least one).
    Returns the results by mode.
    """
    assert modes and modes[0] == "none", "the first mode must be the reference run"
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="scen-") as tmp:
        for mode in modes:
            mdir = Path(tmp) / mode.replace(",", "_")
            (mdir / "args").mkdir(parents=True)
            (mdir / "payload").mkdir()
            margs = [str(a).replace("{tmp}", str(mdir / "args")) for a in args]
            results[mode] = run_scenario(
                name,
                mode,
                args=margs,
                stdin=stdin,
                extra_env=extra_env,
                python_args=python_args,
                workdir=mdir / "payload",
            )

    ref_mode = modes[0]
    ref = results[ref_mode]
    ref_parsed = parse_output(ref.stdout)
    for mode in modes:
        res = results[mode]
        parsed = parse_output(res.stdout)
        context = "\n" + res.describe()
        # the program (and, for the reference, the scenario itself) is sane
        if moves is None:
            assert parsed.markers >= 1, f"[{mode}] no {MARKER} marker printed" + context
        else:
            assert parsed.markers == moves, (
                f"[{mode}] expected {moves} {MARKER} marker(s), got {parsed.markers}" + context
            )
        assert parsed.segments[0], f"[{mode}] nothing printed before the first move" + context
        assert parsed.segments[-1], f"[{mode}] nothing printed after the last move" + context
        if mode != ref_mode:
            assert parsed.lines == ref_parsed.lines, (
                f"[{mode}] output differs from the reference run:\n"
                + _diff(ref_parsed.lines, parsed.lines, ref_mode, mode)
                + context
            )
        problem = check_pids(mode, parsed)
        assert problem is None, f"[{mode}] {problem}" + context
        assert res.returncode == returncode, (
            f"[{mode}] exit code {res.returncode}, expected {returncode}" + context
        )
        if mode != ref_mode and "checkpoint" in mode.split(","):
            assert len(res.steps) >= 2, f"[{mode}] no checkpoint was written" + context
        if exception_line is not None:
            got = last_stderr_line(res.stderr)
            want = exception_line if isinstance(exception_line, str) else last_stderr_line(ref.stderr)
            assert got == want, (
                f"[{mode}] last stderr line {got!r}, expected {want!r}" + context
            )
    return results
