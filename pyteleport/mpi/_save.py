"""Writing an MPI job's checkpoint directory, collectively (see ``_dir``).

Every step that can fail on some ranks is followed by an agreement (an
all-gather of the ranks' errors), so that either every rank goes on or every
rank raises the same :class:`TeleportError`: no rank is left waiting in a
collective call, and nothing is written until every rank has packed its
state.
"""
from __future__ import annotations

import os
import secrets
import sys
from typing import List, Optional

from . import _dir, _world
from .._errors import TeleportError


def agree(comm, error: Optional[str], what: str) -> None:
    """Collective: raise on every rank if any rank has an ``error``."""
    errors = comm.allgather(error)
    failed = [(rank, e) for rank, e in enumerate(errors) if e is not None]
    if not failed:
        return
    if error is not None:
        raise TeleportError(error)
    rank, first = failed[0]
    raise TeleportError(f"{what}: rank {rank} failed: {first}")


def _prepare(directory: str, size: int) -> str:
    """Rank 0: the directory (0700); returns the slot the new checkpoint goes
    to: the one the MANIFEST does not name.  Rank files of that slot beyond
    this job's size go (a larger job's), so that the slot holds this job's
    files only."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    from .._payload.private import UnsafeFile, check_dir
    try:
        check_dir(directory, "the checkpoint directory")
    except UnsafeFile as e:
        raise OSError(str(e)) from None
    try:
        current = _dir.read_manifest(directory).slot
    except _dir.CheckpointError:
        current = None
    slot = _dir.other_slot(current)
    for name, rank, in_slot in _dir.rank_files(directory):
        if in_slot == slot and rank >= size:
            os.unlink(os.path.join(directory, name))
    return slot


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def mpi_context(checkpoint_id: str) -> dict:
    """What the payload's context carries for an MPI rank: the recipes of the
    recorded communicators, and the environment without the launcher's
    per-launch variables (the new launch sets its own)."""
    environ = {k: v for k, v in os.environ.items() if not _world.is_launch_variable(k)}
    return {"mpi": {"comms": _world.recipes(), "checkpoint": checkpoint_id}, "environ": environ}


def save(comm, frame, directory: str, result, what: str = "pyteleport.mpi.checkpoint",
         sync=None) -> None:
    """Collective over ``comm``: write every rank's program, resuming at
    ``frame``'s current call with ``result``, into ``directory``; ``sync``:
    see :func:`pyteleport._payload.container.sync_option`."""
    from .. import __version__
    from .._core import pack as _pack
    from .._payload.container import overwrite_file, sync_option
    rank, size = comm.Get_rank(), comm.Get_size()
    directory = os.path.abspath(os.fspath(directory))
    if rank == 0:     # rank 0 decides for all (a bad value: the error, for all)
        try:
            sync = sync_option(sync, what)
        except TeleportError as e:
            sync = e
    comm.Barrier()       # no message of the program is in flight past this point
    # rank 0's view of the path, of the options and a new id, for every rank
    checkpoint_id, directory, sync = comm.bcast((secrets.token_hex(8), directory, sync), root=0)
    if isinstance(sync, TeleportError):
        raise sync
    payload = error = None
    _world.collective = True
    try:
        payload = _pack.pack(frame, result, extra_context=mpi_context(checkpoint_id))
    except TeleportError as e:
        error = str(e)
    finally:
        _world.collective = False
    agree(comm, error, what)
    slot = None
    if rank == 0:
        try:
            slot = _prepare(directory, size)
        except OSError as e:
            error = f"{what}: cannot prepare {directory}: {e.strerror or e}"
    error, slot = comm.bcast((error, slot), root=0)
    if error is not None:
        raise TeleportError(error)
    # over the files of the slot the MANIFEST does not name: the previous
    # checkpoint stays whole until the new MANIFEST commits this one
    path = os.path.join(directory, _dir.rank_file(rank, slot))
    entry = None
    try:
        overwrite_file(payload, path, f"checkpoint rank {rank}", sync)
        entry = _dir.file_checksum(path)
    except OSError as e:
        error = f"{what}: rank {rank} cannot write {path}: {e.strerror or e}"
    except TeleportError as e:       # no usable signing key
        error = f"{what}: rank {rank}: {e}"
    del payload
    entries = comm.gather((entry, error), root=0)
    if rank == 0:
        error = _commit(directory, entries, checkpoint_id, slot, __version__, what, sync)
    error = comm.bcast(error, root=0)
    if error is not None:
        _unlink(path)     # damaged: nothing is left of the failed attempt
        raise TeleportError(error)


def _commit(directory: str, entries: List[tuple], checkpoint_id: str, slot: str, version: str,
            what: str, sync: bool) -> Optional[str]:
    """Rank 0: the manifest, once every rank wrote its file; replacing it is
    what switches the directory to the new checkpoint."""
    for entry, error in entries:
        if error is not None:
            return error
    text = _dir.render(checkpoint_id, slot, sys.version_info[:2], version, [e for e, _ in entries])
    path = os.path.join(directory, _dir.MANIFEST)
    tmp = path + ".tmp"
    try:
        _unlink(tmp)     # a killed checkpoint's, or a planted link: the name only
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _unlink(tmp)
        return f"{what}: cannot write {path}: {e.strerror or e}"
    if sync:
        try:
            _fsync_directory(directory)
        except OSError:
            pass    # committed all the same: only a crash of the machine could undo it
    return None


def _fsync_directory(directory: str) -> None:
    """Make the MANIFEST's rename survive a crash of the machine."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
