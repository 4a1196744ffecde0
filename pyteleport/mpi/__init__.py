"""Checkpoint or move a running MPI job (mpi4py): every rank at once.

:func:`checkpoint` and :func:`teleport` are collective over
``MPI.COMM_WORLD``: every rank calls them at the same point of the program
(the call is a barrier, so no message is in flight), every rank saves its
own program state, and rank *i* resumes as rank *i* of the new launch, of
the same size.  In the resumed ranks ``MPI.COMM_WORLD`` and
``MPI.COMM_SELF`` are the new launch's, and communicators made with
:func:`dup`, :func:`split` and :func:`create` are made again, in the same
order, before the program goes on.  Any other communicator, and a pending
request, is refused on every rank (:class:`~pyteleport.TeleportError`
naming the frame and the variable) before anything is written.
"""
from __future__ import annotations

import os
import sys

from . import _world

TYPE_CHECKING = False
if TYPE_CHECKING:     # typing costs a move milliseconds to import
    from typing import Optional, Union

__all__ = ["checkpoint", "teleport", "safe_point", "dup", "split", "create"]


def _comm_world():
    try:
        return _world.mpi().COMM_WORLD
    except ImportError as e:
        from .._errors import TeleportError
        raise TeleportError(f"pyteleport.mpi needs mpi4py and an MPI library: {e} "
                            "(pip install mpi4py mpich)") from None


def checkpoint(path: Union[str, os.PathLike], *, sync: Optional[bool] = None) -> bool:
    """Save every rank of the running MPI job into the directory ``path``.

    Collective over ``MPI.COMM_WORLD``.  Rank *i* writes
    ``path/rank-<i>.<slot>.pyteleport`` (mode 0600; the directory is created
    with mode 0700), then rank 0 replaces ``path/MANIFEST`` (checkpoint id,
    slot, rank count, Python version, pyteleport version, size and checksum
    of every rank file), which commits the checkpoint.  Checkpoints
    alternate between two slots, ``a`` and ``b``: a new one is written over
    the slot the MANIFEST does not name.  Returns ``False`` in the running
    job; ``mpirun -n N pyteleport resume PATH`` continues every rank from this
    call, where it returns ``True``.  Raises :class:`TeleportError` on every
    rank if any rank cannot be saved; the directory then still holds the
    previous checkpoint, if there was one.  ``sync`` (default: the
    environment variable ``PYTELEPORT_SYNC``, else true): the files are
    forced to disk before the manifest commits them, so that the checkpoint
    survives a crash of the machine; without, it still survives the job
    being killed, and costs no more than writing the arrays with
    ``numpy.save``.
    """
    from . import _save
    _save.save(_comm_world(), sys._getframe(1), path, True, sync=sync)
    return False


def teleport(backend: Union[str, "object", None] = "mpirun", **options) -> None:
    """Move the running MPI job to a new launch of the same size.

    Collective over ``MPI.COMM_WORLD``.  Every rank saves its program into a
    private stage directory; rank 0 starts the new launch through
    ``backend`` (``"mpirun"``, ``"slurm"`` or an instance), whose ranks
    continue from this call once all of them have rebuilt the program.  The
    ranks here then wait and exit with the new launch's exit code (rank 0
    forwards its output).  If the new launch fails, every rank raises
    :class:`TeleportError` and the job carries on here.  ``options`` go to
    the backend; the rank count (``n`` for mpirun, ``ntasks`` for slurm)
    defaults to this job's size and may not differ from it.
    """
    from . import _move
    _move.move(_comm_world(), sys._getframe(1), backend, options)


def safe_point() -> bool:
    """Where a job protected from Slurm time limits may be checkpointed.

    Collective over ``MPI.COMM_WORLD``; call it on every rank at the same
    point of the main loop.  In a job started with the slurm backend's
    ``requeue=True`` (``teleport(backend="slurm", mpi=True, requeue=True,
    ...)`` or ``pyteleport.mpi.teleport(backend="slurm", requeue=True,
    ...)``): if the time-limit (or preemption) warning signal reached any
    rank, every rank is checkpointed here, the job is requeued and the ranks
    end; in the next allocation every rank resumes from this call, which
    returns ``True`` there.  Otherwise it returns ``False`` (at once, without
    any message, outside such a job).
    """
    from . import _protect
    return _protect.safe_point(sys._getframe(1))


def _parent(comm):
    """How to name ``comm`` in a recipe (None: not re-creatable)."""
    from ._pickling import find_recorded
    MPI = _world.mpi()
    if comm == MPI.COMM_WORLD:
        return "world"
    if comm == MPI.COMM_SELF:
        return "self"
    index = find_recorded(comm)
    if index is None or _world.recorded[index][1][1] is None:
        return None
    return index


def _record(new, recipe):
    _world.recorded.append((new, recipe))
    return new


def dup(comm):
    """``comm.Dup()``, re-created after a move or resume (collective)."""
    return _record(comm.Dup(), ("dup", _parent(comm)))


def split(comm, color: int, key: int = 0):
    """``comm.Split(color, key)``, re-created after a move or resume (collective)."""
    return _record(comm.Split(color, key), ("split", _parent(comm), int(color), int(key)))


def create(comm, group):
    """``comm.Create(group)``, re-created after a move or resume (collective)."""
    MPI = _world.mpi()
    parent = _parent(comm)
    ranks: Optional[list] = None
    if group.Get_size():
        own = comm.Get_group()
        try:
            ranks = list(MPI.Group.Translate_ranks(group, list(range(group.Get_size())), own))
        finally:
            own.Free()
        if any(r == MPI.UNDEFINED for r in ranks):
            parent = None
    return _record(comm.Create(group), ("create", parent, ranks))


