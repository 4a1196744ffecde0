"""Backends: where a moved program continues.

A backend turns a :class:`~pyteleport._payload.Payload` into a running target
process.  The core calls :meth:`Backend.spawn`, which returns only once the
target has confirmed that it rebuilt the program, and then
:meth:`Target.wait`.  Backends are looked up by name in the entry-point group
``pyteleport.backends``; the built-in ones are registered below.
"""
from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from .._errors import TeleportError

TYPE_CHECKING = False   # typing costs a move milliseconds: annotations only
if TYPE_CHECKING:
    from typing import Dict, Type, Union

_BUILTIN = {
    "local": "pyteleport.backends.local:LocalBackend",
    "bash": "pyteleport.backends.bash:BashBackend",
    "ssh": "pyteleport.backends.ssh:SshBackend",
    "mpirun": "pyteleport.backends.mpirun:MpirunBackend",
    "slurm": "pyteleport.backends.slurm:SlurmBackend",
}


DEFAULT_HANDOFF_TIMEOUT = 600.0


def handoff_timeout_option(value, what: str) -> float:
    """The ``handoff_timeout`` option, else ``PYTELEPORT_HANDOFF_TIMEOUT``,
    else 600 s, as a positive number of seconds."""
    name = "handoff_timeout"
    if value is None:
        value = os.environ.get("PYTELEPORT_HANDOFF_TIMEOUT") or DEFAULT_HANDOFF_TIMEOUT
        name = "PYTELEPORT_HANDOFF_TIMEOUT"
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0:   # NaN too
        raise TeleportError(f"{what}: {name} must be a positive number of seconds, not {value!r}")
    return seconds


class Target(ABC):
    """A started target process, after a successful handoff."""

    @abstractmethod
    def wait(self) -> int:
        """Forward standard streams and signals until the target ends; return its exit code."""


class Backend(ABC):
    """Base class of backends.

    Subclasses take their options as keyword arguments in ``__init__`` and
    implement :meth:`spawn`.
    """

    name = "?"

    @abstractmethod
    def spawn(self, payload) -> Target:
        """Start the target, deliver ``payload`` and wait for its confirmation.

        Must raise :class:`pyteleport.TeleportError` with the target's own
        reason if the target cannot rebuild the program; the caller's program
        then continues where it was.
        """

    def rank_stage(self) -> str:
        """A new private directory (mode 0700) where the ranks of an MPI job
        moved by :func:`pyteleport.mpi.teleport` write their payloads; it
        must be visible to them and to the new launch's ranks."""
        import tempfile
        return tempfile.mkdtemp(prefix="pyteleport-mpi-")

    def spawn_ranks(self, directory: str, n: int) -> Target:
        """Start ``n`` MPI ranks, rank *i* resuming ``directory``'s rank *i*
        (an MPI checkpoint directory, see :mod:`pyteleport.mpi`); return once
        every rank confirmed it rebuilt its program, which none runs before.
        ``directory`` is the backend's: removed once loaded, or on failure."""
        import shutil
        shutil.rmtree(directory, ignore_errors=True)
        raise TeleportError(f"backend {self.name!r} cannot start the ranks of an MPI job: "
                            "use backend='mpirun' or 'slurm'")


def _load(spec: str) -> Type[Backend]:
    module, _, attr = spec.partition(":")
    __import__(module)   # importlib.import_module would import importlib first
    return getattr(sys.modules[module], attr)


def available() -> Dict[str, str]:
    """Registered backend names and where they come from."""
    found = dict(_BUILTIN)
    try:
        from importlib.metadata import entry_points
        eps = entry_points()
        group = eps.select(group="pyteleport.backends") if hasattr(eps, "select") else eps.get("pyteleport.backends", [])
        for ep in group:
            found.setdefault(ep.name, ep.value)
    except Exception:  # broken metadata of unrelated packages must not break teleport
        pass
    return found


def get_backend(backend: Union[str, Backend], **options) -> Backend:
    if isinstance(backend, Backend):
        if options:
            raise TeleportError("options cannot be given with a Backend instance: pass them to its constructor")
        return backend
    registry = _BUILTIN if backend in _BUILTIN else available()
    try:
        spec = registry[backend]
    except KeyError:
        raise TeleportError(f"unknown backend {backend!r}; available: {', '.join(sorted(available()))}") from None
    cls = _load(spec)
    try:
        return cls(**options)
    except TypeError as e:
        raise TeleportError(f"backend {backend!r}: {e}") from None
