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


def processes(argv) -> list:
    """pids of the processes running exactly ``argv``."""
    want = "\0".join(argv) + "\0"
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline") as f:
                if entry.isdigit() and f.read() == want:
                    found.append(int(entry))
        except OSError:
            pass
    return found


def wait_no_process(argv, timeout: float = 20.0) -> list:
    """Wait until no process runs ``argv``; the pids still running it."""
    deadline = time.monotonic() + timeout
    while processes(argv) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes(argv)


def console_script() -> Path:
    """The ``pyteleport`` console script installed next to this interpreter."""
    return Path(sys.executable).parent / "pyteleport"
