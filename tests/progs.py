"""Helpers for tests that write a small program into a temporary directory and run it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from harness import run_command


def write_program(directory: Path, source: str, name: str = "prog.py") -> Path:
    path = Path(directory) / name
    path.write_text(textwrap.dedent(source))
    return path


def line_of(path: Path, marker: str) -> int:
    """1-based number of the only line of ``path`` containing ``marker``."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if marker in line]
    assert len(hits) == 1, (marker, hits)
    return hits[0]


def run(cmd, cwd, stdin: str = "", env_extra=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.setdefault("PYTHONIOENCODING", "utf-8")
    if env_extra:
        env.update(env_extra)
    return run_command(cmd, env=env, stdin=stdin, cwd=cwd)


def run_python(args, cwd, **kw) -> subprocess.CompletedProcess:
    return run([sys.executable, *args], cwd, **kw)


def describe(proc: subprocess.CompletedProcess) -> str:
    return (
        f"\ncommand: {proc.args}\nexit code: {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    )


def processes(argv=None, mentioning: str = "") -> list:
    """pids of the processes running exactly ``argv``, or whose command line
    contains ``mentioning``."""
    want = "\0".join(argv) + "\0" if argv is not None else None
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline") as f:
                cmdline = f.read()
        except OSError:
            continue
        if entry.isdigit() and (cmdline == want if want is not None else mentioning in cmdline):
            found.append(int(entry))
    return found


def wait_no_process(argv=None, mentioning: str = "", timeout: float = 20.0) -> list:
    """Wait until no process matches (see :func:`processes`); the pids that still do."""
    deadline = time.monotonic() + timeout
    while processes(argv, mentioning) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes(argv, mentioning)


def console_script() -> Path:
    """The ``pyteleport`` console script installed next to this interpreter."""
    return Path(sys.executable).parent / "pyteleport"
