"""The public calls: :func:`teleport` and :func:`checkpoint`.

This module is imported by ``import pyteleport`` on first use of either call;
it stays light, the snapshot machinery is imported when a call is made.
"""
from __future__ import annotations

import os
import sys

from ._errors import TeleportError
from ._exit import end_process, flush_std as _flush_std

TYPE_CHECKING = False   # typing costs a move milliseconds: annotations only
if TYPE_CHECKING:
    from typing import Optional, Union
    from .backends import Backend


def teleport(backend: Union[str, "Backend", None] = None, **options) -> None:
    """Move the running program to another process and continue it there.

    Everything after this call runs in the new process, where the call returns
    ``None``.  The calling process forwards its standard streams, then exits
    with the new process's exit code: it does not return from this call.

    ``backend`` is a registered backend name (default: the environment
    variable ``PYTELEPORT_BACKEND``, else ``"local"``) or a
    :class:`pyteleport.Backend` instance; ``options`` go to the backend.

    Raises :class:`TeleportError` if the program cannot be moved (a native
    frame on the stack, another live thread, an object that cannot be
    serialised) or the backend cannot start it; the program then continues
    here, unchanged.
    """
    _teleport(sys._getframe(1), backend, **options)


def bash_teleport(*shell_args: str, other_fn=(), **options) -> None:
    """:func:`teleport` through a shell command line: the original pyteleport's call.

    ``shell_args`` is the command line that runs the script it is given as
    its last argument (default ``bash -lc``), e.g.
    ``bash_teleport("ssh", "node042", "conda activate py39;")``; ``other_fn``
    lists files to ship to the target; ``options`` are those of the ``bash``
    backend (``python``, ``setup``, ``cwd``, ``env``, ``ship``, ``detach``).
    """
    ship = options.pop("ship", True)
    if other_fn:
        extra = [other_fn] if isinstance(other_fn, (str, os.PathLike)) else list(other_fn)
        ship = extra + (list(ship) if isinstance(ship, (list, tuple)) else [])
    if shell_args:
        options["command"] = list(shell_args)
    _teleport(sys._getframe(1), "bash", ship=ship, **options)


def _teleport(frame, backend, **options) -> None:
    """:func:`teleport` for the caller's ``frame``: the program resumes right
    after the call that ``frame`` is making."""
    from . import backends
    if backend is None:
        backend = os.environ.get("PYTELEPORT_BACKEND") or "local"
    impl = backends.get_backend(backend, **options)
    cell = None
    if "IPython" in sys.modules:      # a notebook cell moves alone, and comes back
        from ._notebook.kernel import cell_move
        cell = cell_move(frame)
    if cell is None:
        _move(frame, impl, None)
    from ._notebook import streams
    if not streams.needed():
        _move(frame, impl, cell)
    with streams.Relay():             # the target's output reaches the cell
        _move(frame, impl, cell)


def _move(frame, impl, cell) -> None:
    impl.keeps_running = cell is not None
    # a backend may start connecting while the program is packed
    prepare = getattr(impl, "prepare", None)
    if prepare is not None:
        prepare()
    try:
        payload = _pack_program(frame, cell)
    except BaseException:
        cancel = getattr(impl, "cancel", None)
        if cancel is not None:
            cancel()
        raise
    del frame
    _flush_std()
    try:
        target = impl.spawn(payload)
    except KeyboardInterrupt:
        # Ctrl-C while the target started (a job pending): the backend stopped
        # what it started; the program gets it here, not inside pyteleport
        raise KeyboardInterrupt from None
    code = _wait(target)
    _flush_std()
    if cell is not None:
        cell.finish(code, f"the {impl.name} backend")     # raises: the cell stops here
    end_process(code)


def _pack_program(frame, cell, result=None):
    """The payload of the program at ``frame`` (whose call returns
    ``result`` there); of a notebook cell's move, if ``cell``."""
    from ._core import pack as _pack
    if cell is None:
        return _pack.pack(frame, result)
    try:
        return _pack.pack(frame, result, cell.context(), cell=cell)
    except TeleportError:
        # a cell's namespace goes without what cannot be serialised (it is said)
        from ._core.pack import _compile_suspended
        from ._payload.pickler import unpicklable
        bad = unpicklable(cell.namespace(), {}, _compile_suspended, {})
        if not bad:
            raise
        cell.leave_out(bad)
        return _pack.pack(frame, result, cell.context(), cell=cell)


def checkpoint(path: Union[str, os.PathLike], *, sync: Optional[bool] = None) -> bool:
    """Save the running program to ``path`` and carry on.

    Returns ``False`` here.  ``pyteleport resume PATH`` continues the program
    from this call in a new process, where it returns ``True``.  The file is
    written atomically with mode 0600.  ``sync`` (default: the environment
    variable ``PYTELEPORT_SYNC``, else true): the file is forced to disk
    before the call returns, so that it survives a crash of the machine;
    without, it still survives the program being killed.

    In a notebook cell (or at an IPython prompt), the file holds the cell
    from this call on, with the user namespace (what cannot be serialised is
    left out, and said): ``pyteleport resume PATH`` runs the rest of the cell
    as a script, without a kernel.
    """
    from ._payload.container import sync_option, write_file
    durable = sync_option(sync, "pyteleport.checkpoint")
    frame = sys._getframe(1)
    cell = None
    if "IPython" in sys.modules:
        from ._notebook.kernel import cell_move
        cell = cell_move(frame, way_back=False)
    payload = _pack_program(frame, cell, True)
    del frame
    if cell is not None and cell.not_sent:
        from ._log import notice
        notice(f"checkpoint of the cell without: {cell.left_out()}")
    path = os.fspath(path)
    try:
        write_file(payload, path, f"checkpoint {os.path.basename(path)}", durable)
    except OSError as e:
        raise TeleportError(f"cannot write checkpoint {path!r}: {e.strerror or e}") from None
    return False


def _wait(target) -> int:
    """The exit code of the program's new home, once it ended.  Following it
    can fail (the batch system stopped answering): the program lives there
    now and cannot go on here too, so this is an error and exit code 1,
    never an exception back into the program."""
    try:
        return target.wait()
    except Exception as e:
        import logging     # an error the user must see, even without logging set up
        logging.getLogger("pyteleport").error(
            "pyteleport: lost track of the moved program (it may still run there): %s; exiting with 1",
            e)
        return 1


