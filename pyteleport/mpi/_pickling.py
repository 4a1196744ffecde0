"""How the pickler treats mpi4py objects (only when the program imported mpi4py).

mpi4py pickles its predefined objects (``COMM_WORLD``, ``COMM_SELF``,
``DOUBLE``, ``SUM``, ``REQUEST_NULL``, ...) by name, so in a resumed rank
they are that launch's own.  Here:

* communicators recorded by :mod:`pyteleport.mpi` (``dup``/``split``/
  ``create``) travel as references to their re-created counterparts;
* groups travel as their members' ranks in ``COMM_WORLD``;
* any other communicator, and a pending request, is refused with a reason
  the pickler's diagnosis puts next to the variable's name.
"""
from __future__ import annotations

import sys

from . import _world

TYPE_CHECKING = False
if TYPE_CHECKING:     # typing costs a move milliseconds to import
    from typing import Optional, Tuple


def mpi_types() -> Optional[Tuple[type, ...]]:
    """The mpi4py types handled here, or None if the program does not use
    mpi4py (never imported here: importing it initialises MPI)."""
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is None:
        return None
    return MPI.Comm, MPI.Request, MPI.Group


def find_recorded(comm) -> Optional[int]:
    """Index of ``comm`` among the recorded communicators (same handle)."""
    MPI = sys.modules["mpi4py.MPI"]
    if comm == MPI.COMM_NULL:
        return None
    for i, (known, _) in enumerate(_world.recorded):
        if known is not None and known == comm:
            return i
    return None


def reduce(obj, refuse):
    """The reduction of an mpi4py object, or NotImplemented (mpi4py's own);
    ``refuse(message)`` raises the pickler's refusal."""
    MPI = sys.modules["mpi4py.MPI"]
    if isinstance(obj, MPI.Comm):
        if _predefined(obj, MPI, (MPI.COMM_WORLD, MPI.COMM_SELF, MPI.COMM_NULL)):
            return NotImplemented
        index = find_recorded(obj)
        if index is not None and not _world.collective:
            refuse(f"MPI communicator {_describe(obj)} is re-created only when every rank moves: use "
                   "pyteleport.mpi.checkpoint() or pyteleport.mpi.teleport(), or Free() it before the call")
        if index is not None and _world.recorded[index][1][1] is not None:
            return _world.comm, (index,)
        refuse(f"MPI communicator {_describe(obj)} cannot be moved: make it with "
               "pyteleport.mpi.dup(), split() or create() (from COMM_WORLD, COMM_SELF or one of "
               "those) so that it is re-created in the new launch, or Free() it before the call")
    if isinstance(obj, MPI.Request):
        if obj == MPI.REQUEST_NULL:
            return NotImplemented
        refuse("a pending MPI request cannot be moved: complete it (Wait()) or cancel it "
               "before the call")
    if isinstance(obj, MPI.Group):
        if _predefined(obj, MPI, (MPI.GROUP_EMPTY, MPI.GROUP_NULL)):
            return NotImplemented
        world = MPI.COMM_WORLD.Get_group()
        try:
            ranks = MPI.Group.Translate_ranks(obj, list(range(obj.Get_size())), world)
        finally:
            world.Free()
        if any(r == MPI.UNDEFINED for r in ranks):
            refuse("an MPI group with processes outside COMM_WORLD cannot be moved")
        return _world.group, (list(ranks),)
    return NotImplemented


def _predefined(obj, MPI, constants) -> bool:
    return any(obj == c for c in constants)


def _describe(comm) -> str:
    try:
        name = comm.Get_name()
    except Exception:    # mpi4py raises MPI.Exception subclasses
        name = ""
    size = comm.Get_size() if hasattr(comm, "Get_size") else "?"
    return f"{name!r} ({type(comm).__name__} of size {size})" if name else \
        f"({type(comm).__name__} of size {size})"
