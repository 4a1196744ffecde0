"""Moving a running MPI job to a new launch: :func:`pyteleport.mpi.teleport`.

1. rank 0 sets up the backend (options checked; the rank count defaults to
   this job's size) and a private stage directory, and tells every rank;
2. every rank writes its program there, as :func:`pyteleport.mpi.checkpoint`
   does (so a rank that cannot be packed stops the move on every rank, with
   nothing started);
3. rank 0 starts the new launch (``Backend.spawn_ranks``), which hands over
   only once every new rank has rebuilt its program, and tells every rank
   the outcome: on failure every rank raises :class:`TeleportError` and the
   job carries on here;
4. rank 0 forwards the new launch's output and waits for its end; then every
   rank exits with its exit code.

The waiting ranks poll a point-to-point message with a pause in between:
a blocking MPI call would keep a core busy (MPICH spins) for as long as the
new job runs.
"""
from __future__ import annotations

import os
import shutil
import time

from . import _save
from .._errors import TeleportError
from .._exit import end_process

WHAT = "pyteleport.mpi.teleport"
# backend name -> its option for the rank count
RANK_OPTIONS = {"mpirun": "n", "slurm": "ntasks"}
_POLL = 0.05


def _backend(backend, options: dict, size: int):
    """The backend instance (rank 0 only; raises TeleportError)."""
    from .. import backends
    if backend is None:
        backend = os.environ.get("PYTELEPORT_BACKEND") or "mpirun"
    option = RANK_OPTIONS.get(backend) if isinstance(backend, str) else None
    if option is not None:
        count = options.setdefault(option, size)
        if count != size:
            raise TeleportError(
                f"{WHAT}: {option}={count!r}, but this job has {size} ranks: an MPI job moves to as "
                f"many ranks (rank i resumes as rank i); leave {option} out")
    return backends.get_backend(backend, **options)


def _receive(comm, source: int = 0, tag: int = 0):
    """A message from ``source``, waiting without keeping a core busy."""
    # probe, then receive: a pending irecv() would need a buffer as large
    # as the message (a long error message may not fit the default one)
    while not comm.iprobe(source=source, tag=tag):
        time.sleep(_POLL)
    return comm.recv(source=source, tag=tag)


def _tell_all(comm, value, tag: int = 0) -> None:
    for rank in range(1, comm.Get_size()):
        comm.send(value, dest=rank, tag=tag)


def move(world, frame, backend, options: dict) -> None:
    """Collective over ``world``; returns only when the move failed (raising)
    or in the new launch."""
    comm = world.Dup()      # the move's own messages never meet the program's
    try:
        code = _move(comm, frame, backend, dict(options))
        # every rank knows the new launch's exit code: this launch ends
        # cleanly, all together (a rank leaving without MPI_Finalize makes the
        # launcher kill the others, which may still be on their way out)
        comm.Barrier()
    finally:
        comm.Free()
    from mpi4py import MPI
    MPI.Finalize()
    end_process(code)


def _move(comm, frame, backend, options: dict) -> int:
    """The move; the new launch's exit code once it ended."""
    rank, size = comm.Get_rank(), comm.Get_size()
    impl = stage = error = None
    if rank == 0:
        try:
            impl = _backend(backend, options, size)
            stage = impl.rank_stage()
        except TeleportError as e:
            error = str(e)
        except OSError as e:
            error = f"{WHAT}: cannot make the stage directory: {e.strerror or e}"
    error, stage = comm.bcast((error, stage), root=0)
    if error is not None:
        raise TeleportError(error)
    try:
        _save.save(comm, frame, stage, None, WHAT)
    except TeleportError:
        if rank == 0:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    del frame
    from ..api import _flush_std
    _flush_std()
    if rank == 0:
        try:
            target = impl.spawn_ranks(stage, size)
        except BaseException as e:
            _tell_all(comm, str(e) if isinstance(e, TeleportError) else
                      f"{WHAT}: rank 0 stopped: {type(e).__name__}: {e}")
            raise
        _tell_all(comm, None)
        from ..api import _wait
        code = _wait(target)       # never raises: the other ranks wait for a code
        _flush_std()
        _tell_all(comm, code, tag=1)
    else:
        error = _receive(comm)
        if error is not None:
            raise TeleportError(error)
        code = _receive(comm, tag=1)
    return code
