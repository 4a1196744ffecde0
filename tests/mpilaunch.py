"""The real MPI the MPI tests run against: the launcher next to this
interpreter (the mpich wheel) or on PATH, and how to run programs under it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import mpi4py  # noqa: F401  the test environments install it: missing MPI fails, never skips

from pyteleport.backends.mpirun import find_launcher

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = find_launcher(sys.executable)
assert LAUNCHER is not None, "no mpirun/mpiexec next to this interpreter or on PATH: install mpich"

# Open MPI refuses root and more ranks than cores unless told; MPICH ignores these
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe"}


def mpi_env(**extra: str) -> Dict[str, str]:
    """This environment, with this repository's pyteleport first on the path."""
    env = dict(os.environ)
    env.update(MPI_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def run(cmd: List, cwd: Path, timeout: float, **extra: str) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd`` (also its TMPDIR), no stdin, output captured."""
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=mpi_env(TMPDIR=str(cwd), **extra),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def mpiexec(n: int, *args) -> List[str]:
    return [LAUNCHER, "-n", str(n), *args]


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
