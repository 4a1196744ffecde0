"""Run the test suite on every supported CPython: ``python3 -m nox``.

The interpreters are expected under pyenv (``$(pyenv root)/versions/3.X.Y``).
At import time the newest installed patch release of each supported minor
version is put in front of PATH, so nox finds ``python3.X`` there instead of a
pyenv shim (a shim fails for versions that are not "activated").  When pyenv is
absent, whatever ``python3.X`` is already on PATH is used.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import nox

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True
# A missing interpreter is a failure, not a silent skip.
nox.options.error_on_missing_interpreters = True


def _pyenv_roots() -> list[str]:
    roots = []
    env_root = os.environ.get("PYENV_ROOT")
    if env_root:
        roots.append(env_root)
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            out = subprocess.run(
                [pyenv, "root"], capture_output=True, text=True, timeout=30, check=False
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            roots.append(out)
    roots.append(os.path.expanduser("~/.pyenv"))
    seen, result = set(), []
    for root in roots:
        real = os.path.realpath(root)
        if real not in seen and os.path.isdir(os.path.join(real, "versions")):
            seen.add(real)
            result.append(real)
    return result


def _interpreter_dirs() -> list[str]:
    """bin/ dirs of the newest pyenv CPython of each minor version in PYTHONS."""
    wanted = {tuple(int(p) for p in v.split(".")) for v in PYTHONS}
    best: dict[tuple[int, int], tuple[tuple[int, int, int], str]] = {}
    for root in _pyenv_roots():
        versions = os.path.join(root, "versions")
        for name in os.listdir(versions):
            m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", name)
            if not m:
                continue  # pypy-*, 3.13t, virtualenvs, ...
            version = tuple(int(g) for g in m.groups())
            minor = version[:2]
            bindir = os.path.join(versions, name, "bin")
            if minor not in wanted or not os.access(
                os.path.join(bindir, "python%d.%d" % minor), os.X_OK
            ):
                continue
            if minor not in best or version > best[minor][0]:
                best[minor] = (version, bindir)
    return [best[m][1] for m in sorted(best)]


def _prepend_interpreters_to_path() -> None:
    dirs = _interpreter_dirs()
    if not dirs:
        return
    current = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    os.environ["PATH"] = os.pathsep.join(dirs + [p for p in current if p not in dirs])


_prepend_interpreters_to_path()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Install the package with its test extras and run pytest on all cores."""
    # setuptools builds in-tree; a stale build/ could ship modules deleted since.
    shutil.rmtree(os.path.join(os.path.dirname(os.path.abspath(__file__)), "build"), ignore_errors=True)
    session.install(".[test]")
    session.run("pytest", "-n", "auto", *session.posargs)
