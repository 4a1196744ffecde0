"""MPI ranks in a Slurm job: the ``slurm`` backend with ``mpi=True`` (one
program fanned out into ``ntasks`` ranks) and as the target of
:func:`pyteleport.mpi.teleport` (rank *i* resumes rank *i*).

The batch script starts the ranks with an MPI launcher inside the allocation
(default ``srun --mpi=pmi2``: the PMI that Slurm and MPICH both speak; Open
MPI builds may want ``--mpi=pmix``).  No source runs next to the ranks, so
they hold each other back themselves (``pyteleport.mpi._resume``): none runs the program
before every one has rebuilt it, and rank 0 reports the launch's verdict in
the stage's ``status.0``, which the source waits for as for any slurm job.
"""
from __future__ import annotations

import os
import shlex
from typing import List, Optional, Sequence, Union

from ..._errors import TeleportError
from ...mpi._world import is_launch_variable
from .. import Target
from . import _cli
from ._stage import job_script, make_stage, remove_stage, stage_payload
from ._target import hand_over

DEFAULT_LAUNCHER = ("srun", "--mpi=pmi2")
ENTRY = "pyteleport.mpi._resume:main"


def launcher(value: Union[str, Sequence[str], None]) -> List[str]:
    """The launcher's words: ``mpi_launcher``, else ``PYTELEPORT_SLURM_MPI_LAUNCHER``
    (a shell-quoted command line), else ``srun --mpi=pmi2``."""
    if value is None:
        value = os.environ.get("PYTELEPORT_SLURM_MPI_LAUNCHER") or list(DEFAULT_LAUNCHER)
    words = shlex.split(value) if isinstance(value, str) else [str(w) for w in value]
    if not words:
        raise TeleportError("slurm backend: mpi_launcher is empty")
    return words


def ntasks(args: List[str]) -> Optional[int]:
    """The ``--ntasks`` among sbatch's arguments."""
    for arg in args:
        if arg.startswith("--ntasks="):
            value = arg.split("=", 1)[1]
            return int(value) if value.isdigit() else None
    return None


def check(backend, array) -> None:
    """Options that ``mpi=True`` cannot go with."""
    if ntasks(backend.args) is None:
        raise TeleportError("slurm backend: mpi=True needs ntasks (the number of MPI ranks)")
    if array is not None:
        raise TeleportError("slurm backend: mpi=True cannot be combined with array")


def _setup(setup: Optional[str]) -> str:
    """``setup``, after removing the variables of an MPI launch the source
    is part of (sbatch exports the source's environment to the job)."""
    stale = sorted(k for k in os.environ if is_launch_variable(k))
    lines = [f"unset {' '.join(stale)}"] if stale else []
    return "\n".join(lines + ([setup] if setup else []))


def spawn(backend, stage: str, entry_args: List[str]) -> Target:
    """Submit the job that starts the ranks on ``stage`` and wait (with
    ``wait``) until rank 0 reports that every rank rebuilt its program.
    The stage is the caller's: removed here on failure."""
    try:
        if not backend.wait:
            entry_args = [*entry_args, "--detached"]    # no source will remove the stage
        script = job_script(backend.python, stage, _setup(backend.setup), entry_args,
                            launcher(backend.mpi_launcher), ENTRY)
        job_id = _cli.submit(backend.args, script)
    except BaseException:
        remove_stage(stage)
        raise
    return hand_over(job_id, stage, [0], backend.args, backend.wait, backend.wait_why)


def spawn_fanout(backend, payload) -> Target:
    """``mpi=True``: every rank resumes ``payload``."""
    stage = make_stage(backend.stage_dir)
    try:
        stage_payload(stage, payload, [0])
    except BaseException:
        remove_stage(stage)
        raise
    return spawn(backend, stage, ["--shared", str(ntasks(backend.args)), *backend.entry_args])


def spawn_ranks(backend, directory: str, n: int) -> Target:
    """:func:`pyteleport.mpi.teleport`: rank *i* resumes ``directory``'s rank *i*."""
    count = ntasks(backend.args)
    if count != n:
        remove_stage(directory)
        raise TeleportError(f"slurm backend: ntasks={count}, but the MPI job has {n} ranks: it moves "
                            "to as many ranks (rank i resumes as rank i); leave ntasks out")
    return spawn(backend, directory, ["--verdict", *backend.entry_args])
