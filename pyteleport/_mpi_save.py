"""Writing an MPI job's checkpoint directory, collectively (see ``_mpi_dir``).

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

from . import _mpi_dir, _mpi_world
from ._errors import TeleportError


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


def _prepare(directory: str) -> Optional[str]:
    """Rank 0: the directory (0700), without the files of checkpoints that
    never finished; returns the id of the checkpoint it holds, if any (kept
    until the new one is committed)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    try:
        current = _mpi_dir.read_manifest(directory).id
    except _mpi_dir.CheckpointError:
        current = None
    for name, _, checkpoint_id in _mpi_dir.rank_files(directory):
        if checkpoint_id != current:
            os.unlink(os.path.join(directory, name))
    for name in os.listdir(directory):
        if name.startswith(".rank-") and name.endswith(".tmp"):    # a write killed half-way
            os.unlink(os.path.join(directory, name))
    return current


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def mpi_context(checkpoint_id: str) -> dict:
    """What the payload's context carries for an MPI rank: the recipes of the
    recorded communicators, and the environment without the launcher's
    per-launch variables (the new launch sets its own)."""
    environ = {k: v for k, v in os.environ.items() if not _mpi_world.is_launch_variable(k)}
    return {"mpi": {"comms": _mpi_world.recipes(), "checkpoint": checkpoint_id}, "environ": environ}


def save(comm, frame, directory: str, result, what: str = "pyteleport.mpi.checkpoint",
         sync=None) -> None:
    """Collective over ``comm``: write every rank's program, resuming at
    ``frame``'s current call with ``result``, into ``directory``; ``sync``:
    see :func:`pyteleport._payload.sync_option`."""
    from . import __version__, _pack
    from ._payload import sync_option, write_file
    rank, size = comm.Get_rank(), comm.Get_size()
    directory = os.path.abspath(os.fspath(directory))
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
    _mpi_world.collective = True
    try:
        payload = _pack.pack(frame, result, extra_context=mpi_context(checkpoint_id))
    except TeleportError as e:
        error = str(e)
    finally:
        _mpi_world.collective = False
    agree(comm, error, what)
    previous = None
    if rank == 0:
        try:
            previous = _prepare(directory)
        except OSError as e:
            error = f"{what}: cannot prepare {directory}: {e.strerror or e}"
    error, previous = comm.bcast((error, previous), root=0)
    if error is not None:
        raise TeleportError(error)
    # beside the previous checkpoint's files, which stay until the new
    # MANIFEST commits this one: a failure from here on loses nothing
    path = os.path.join(directory, _mpi_dir.rank_file(rank, checkpoint_id))
    entry = None
    try:
        write_file(payload, path, f"checkpoint rank {rank}", sync)
        entry = _mpi_dir.file_crc(path)
    except OSError as e:
        error = f"{what}: rank {rank} cannot write {path}: {e.strerror or e}"
    del payload
    entries = comm.gather((entry, error), root=0)
    if rank == 0:
        error = _commit(directory, entries, checkpoint_id, __version__, what, sync)
    error = comm.bcast(error, root=0)
    if error is not None:
        _unlink(path)
        raise TeleportError(error)
    if previous is not None:
        _unlink(os.path.join(directory, _mpi_dir.rank_file(rank, previous)))
        if rank == 0:     # a previous checkpoint of a larger job
            for name, other, old in _mpi_dir.rank_files(directory):
                if old == previous and other >= size:
                    _unlink(os.path.join(directory, name))


def _commit(directory: str, entries: List[tuple], checkpoint_id: str, version: str,
            what: str, sync: bool) -> Optional[str]:
    """Rank 0: the manifest, once every rank wrote its file; replacing it is
    what switches the directory to the new checkpoint."""
    for entry, error in entries:
        if error is not None:
            return error
    text = _mpi_dir.render(checkpoint_id, sys.version_info[:2], version, [e for e, _ in entries])
    path = os.path.join(directory, _mpi_dir.MANIFEST)
    tmp = path + ".tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
