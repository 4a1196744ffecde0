"""Run the test suite on every supported CPython and build the docs: ``python3 -m nox``.

At import time each supported minor version is looked up, in this order:

1. pyenv (``$(pyenv root)/versions/3.X.Y``): the newest installed patch release
   of each minor version has its bin dir put in front of PATH, so nox finds
   ``python3.X`` there instead of a pyenv shim (a shim fails for versions that
   are not "activated");
2. a ``python3.X`` already on PATH (system, an activated conda env, ...);
3. a conda installation's base interpreter (``$CONDA_PREFIX``, ``$CONDA_EXE``,
   ``~/miniconda3``, ``~/miniforge3``, ``~/anaconda3``, ``/opt/conda``), linked
   alone into ``.nox/.interpreters`` (the rest of conda's bin dir stays off PATH);
4. for 3.14 and 3.15 only: a private interpreter that ``.ci/debian_python.py``
   provisions (once, then cached) from Debian unstable's binary packages; its
   ``bin`` dir, holding only ``python3.X``, goes on PATH.  Only the versions the
   command line asks for are provisioned (``-s tests-3.12`` provisions nothing;
   ``-s docs`` and ``-l`` neither).

Free-threaded builds are never picked.  A version that is still missing is an
error (``error_on_missing_interpreters``).

The ``docs`` session builds ``docs/`` with Sphinx on ``DOCS_PYTHON``, every
warning an error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import nox

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
# the versions .ci/debian_python.py can provision when the machine has none
PROVISIONABLE = ("3.14", "3.15")
HERE = os.path.dirname(os.path.abspath(__file__))

# the interpreter the docs session builds with (Sphinx needs 3.11 or later)
DOCS_PYTHON = "3.12"

# What `python3 -m nox` runs: the tests on every supported version, then the docs.
DEFAULT_PYTHONS = PYTHONS
nox.options.sessions = [f"tests-{v}" for v in DEFAULT_PYTHONS] + ["docs"]
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


def _usable(python: str, version: str) -> bool:
    """python runs, is CPython `version` and is not a free-threaded build."""
    code = ("import sys, sysconfig; print('%d.%d' % sys.version_info[:2], "
            "sys.implementation.name, bool(sysconfig.get_config_var('Py_GIL_DISABLED')))")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60,
                             check=False, stdin=subprocess.DEVNULL).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return False
    return out == [version, "cpython", "False"]


def _on_path(version: str) -> str | None:
    shims = {os.path.realpath(os.path.join(r, "shims")) for r in _pyenv_roots()}
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if not d or os.path.realpath(d) in shims or os.path.basename(d) == "shims":
            continue
        path = os.path.join(d, "python" + version)
        if os.access(path, os.X_OK) and _usable(path, version):
            return path
    return None


def _conda_interpreter(version: str) -> str | None:
    bases = [os.environ.get("CONDA_PREFIX", "")]
    if os.environ.get("CONDA_EXE"):
        bases.append(os.path.dirname(os.path.dirname(os.environ["CONDA_EXE"])))
    bases += [os.path.expanduser("~/" + n) for n in ("miniconda3", "miniforge3", "mambaforge", "anaconda3")]
    bases.append("/opt/conda")
    for base in bases:
        if not base:
            continue
        candidates = [os.path.join(base, "bin", "python" + version)]
        candidates += sorted(_conda_envs(base, version))
        for path in candidates:
            if os.access(path, os.X_OK) and _usable(path, version):
                return path
    return None


def _conda_envs(base: str, version: str) -> list[str]:
    envs = os.path.join(base, "envs")
    if not os.path.isdir(envs):
        return []
    return [os.path.join(envs, e, "bin", "python" + version) for e in os.listdir(envs)]


def _requested_versions() -> set[str]:
    """The versions of PYTHONS that this nox command line may run (conservatively)."""
    args = sys.argv[1:]
    if "--" in args:
        args = args[: args.index("--")]
    if any(a in ("-l", "--list", "--list-sessions", "-h", "--help", "--version", "--usage")
           or a.startswith("--json") for a in args):
        return set()
    sessions: list[str] = []
    pythons: list[str] = []
    target = None
    for a in args:
        opt, eq, val = a.partition("=")
        if opt in ("-s", "-e", "--session", "--sessions"):
            target = sessions
        elif opt in ("-p", "--python", "--pythons", "--force-python", "-P", "--extra-python", "--extra-pythons"):
            target = pythons
        elif a.startswith("-"):
            target = None
            continue
        elif target is not None:
            target.append(a)
            continue
        else:
            continue
        if eq:
            target.append(val)
            target = None
    sessions += [s for s in os.environ.get("NOXSESSION", "").split(",") if s]
    pythons += [p for p in os.environ.get("NOXPYTHON", "").split(",") if p]
    pythons += [p for p in os.environ.get("NOXFORCEPYTHON", "").split(",") if p]
    pythons = [v for p in pythons for v in p.split(",") if v]
    if sessions:
        from_sessions: set[str] = set()
        for name in sessions:
            m = re.fullmatch(r"tests-(\d+\.\d+)", name)
            if m:
                from_sessions.add(m.group(1))
            elif name in ("docs", f"docs-{DOCS_PYTHON}"):
                from_sessions.add(DOCS_PYTHON)
            else:  # "tests", or a name this does not know: everything
                from_sessions |= set(PYTHONS)
        wanted = from_sessions & set(pythons) if pythons else from_sessions
    else:
        wanted = set(pythons) if pythons else set(DEFAULT_PYTHONS) | {DOCS_PYTHON}
    return wanted & set(PYTHONS)


def _provision(version: str) -> str | None:
    """The bin dir of a private CPython `version` from .ci/debian_python.py, or None."""
    script = os.path.join(HERE, ".ci", "debian_python.py")
    print("nox: no CPython %s on this machine: using .ci/debian_python.py's private one "
          "(provisioned on first use, then cached)" % version, file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, script, version], stdout=subprocess.PIPE, text=True,
                          check=False, stdin=subprocess.DEVNULL)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        print("nox: could not provision CPython %s (see above); its session will fail" % version,
              file=sys.stderr, flush=True)
        return None
    return lines[-1]


def _prepend_interpreters_to_path() -> None:
    dirs = _interpreter_dirs()
    found = {os.path.basename(os.path.dirname(d)).rsplit(".", 1)[0] for d in dirs}
    requested = _requested_versions()
    links = os.path.join(HERE, ".nox", ".interpreters")
    for version in PYTHONS:
        if version in found or version not in requested:
            continue
        if _on_path(version):
            continue  # nox finds it there
        conda = _conda_interpreter(version)
        if conda:
            os.makedirs(links, exist_ok=True)
            link = os.path.join(links, "python" + version)
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(conda, link)
            if links not in dirs:
                dirs.append(links)
        elif version in PROVISIONABLE:
            bindir = _provision(version)
            if bindir:
                dirs.append(bindir)
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


@nox.session(python=PYTHONS, default=False)
def soak(session: nox.Session) -> None:
    """Not run by default: the MPI, Slurm and signal tests, 20 runs in a row
    under CPU load (tests/soak.py; arguments go to it, e.g. ``-- --runs 5``)."""
    session.install(".[test]")
    session.run("python", "tests/soak.py", *session.posargs)


@nox.session(python=DOCS_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation (docs/, Sphinx + MyST) into docs/_build/html;
    every warning is an error.  conf.py documents the checkout's own modules."""
    # a full build every time: an incremental one does not repeat the
    # warnings of pages it does not read again
    shutil.rmtree(os.path.join(HERE, "docs", "_build"), ignore_errors=True)
    session.install(".[docs]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html",
                *session.posargs)
