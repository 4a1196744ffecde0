"""An MPI job surviving Slurm time limits: ``requeue=True`` with MPI ranks.

A rank cannot be snapshotted alone at an arbitrary instruction, as
:mod:`pyteleport.slurm` does for one process: the others may be inside a
collective call waiting for it.  So the warning signal (forwarded by
``srun`` to every rank) only marks the rank, and the program calls
:func:`pyteleport.mpi.safe_point` in its main loop, on every rank: there
the ranks agree (one all-reduce) whether any was signalled; if so every
rank checkpoints into ``<stage>/ckpt.mpi`` (an MPI checkpoint directory),
rank 0 requeues the job and the ranks end.  The requeued job's ranks resume
that checkpoint, where ``safe_point()`` returns True.
"""
from __future__ import annotations

import os
import signal as _signal

from .._errors import TeleportError
from .._exit import end_process, flush_std

CHECKPOINT = "ckpt.mpi"      # kept by the slurm backend if the job ends with it
WHAT = "pyteleport.mpi.safe_point"

# set in each rank by install(); module globals, so that the signal handler,
# carried in a checkpoint by reference, finds them again after a resume
_config: dict = {}


def install(stage: str, signum: int, max_restarts: int, rank: int) -> None:
    """In a rank of a protected job, before its program runs."""
    _config.update(stage=stage, signum=signum, max_restarts=max_restarts, signalled=False)
    _signal.signal(signum, _on_signal)
    if rank == 0:
        import atexit
        atexit.register(_program_done)


def checkpoint_dir(stage: str) -> str:
    return os.path.join(stage, CHECKPOINT)


def _on_signal(signum, frame) -> None:
    _config["signalled"] = True


def _program_done() -> None:
    """The program ended: its checkpoint is of no more use."""
    import shutil
    shutil.rmtree(checkpoint_dir(_config["stage"]), ignore_errors=True)


def safe_point(frame) -> bool:
    """See :func:`pyteleport.mpi.safe_point`."""
    if not _config:
        return False      # not a protected job: every rank alike, no message
    from ._world import mpi
    MPI = mpi()
    comm = MPI.COMM_WORLD
    if not comm.allreduce(bool(_config["signalled"]), op=MPI.LOR):
        return False
    from .. import _log
    from . import _save
    path = checkpoint_dir(_config["stage"])
    try:
        _save.save(comm, frame, path, True, WHAT)
    except TeleportError as e:
        _config["signalled"] = False
        _log.error("%s: cannot checkpoint the job at the Slurm signal: %s; it carries on and will "
                   "be stopped at the time limit", WHAT, e)
        return False
    flush_std()
    # MPI ends cleanly before the requeue stops the job step: ranks killed in
    # the middle of MPI leave state that breaks MPI_Init in the requeued job
    rank = comm.Get_rank()
    comm.Barrier()
    MPI.Finalize()
    end_process(_requeue(path) if rank == 0 else 0)


def _requeue(path: str) -> int:
    from .. import _log
    from ..backends.slurm import _cli
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if restarts >= _config["max_restarts"]:
        _log.error("the job was checkpointed to %s, but has been restarted %d times (max_restarts): "
                   "not requeued; continue it with: mpirun -n N pyteleport resume %s", path, restarts, path)
        return 1
    try:
        _cli.requeue(os.environ["SLURM_JOB_ID"])
    except TeleportError as e:
        _log.error("%s; the job was checkpointed to %s: continue it with: mpirun -n N pyteleport "
                   "resume %s", e, path, path)
        return 1
    _log.info("checkpointed the job to %s and requeued it", path)
    return 0
