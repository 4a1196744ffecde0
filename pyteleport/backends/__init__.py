"""Backends: where a moved program continues.

A backend turns a :class:`~pyteleport._payload.container.Payload` into a running target
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
    from typing import Dict, Optional, Type, Union

_BUILTIN = {
    "local": "pyteleport.backends.local:LocalBackend",
    "bash": "pyteleport.backends.bash:BashBackend",
    "ssh": "pyteleport.backends.ssh:SshBackend",
    "mpirun": "pyteleport.backends.mpirun:MpirunBackend",
    "slurm": "pyteleport.backends.slurm:SlurmBackend",
}


DEFAULT_HANDOFF_TIMEOUT = 600.0
# the folder this pyteleport is imported from (it holds pyteleport/)
_IMPORT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def entry_code(entry: str, block: Optional[str] = None) -> str:
    """``python -c`` code that runs ``entry`` (``"module:function"``) of this
    very pyteleport, whatever the target's own ``sys.path`` holds.  ``block``:
    a signal (``"USR2"``) blocked first thing, before anything is imported:
    one that arrives meanwhile stays pending (even if ignored) until the
    entry unblocks it, instead of taking its default action."""
    module, function = entry.split(":")
    first = (f"import signal; signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIG{block}}}); "
             if block else "")
    return (f"{first}import sys; sys.path.insert(0, {_IMPORT_ROOT!r}); "
            f"from {module} import {function}; {function}()")


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
    # set by pyteleport before the move: the source goes on once the target
    # ended (a notebook kernel moving a cell), rather than exiting
    keeps_running = False

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
        from .mpirun._stage import make_dir
        return make_dir()

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
        # said with the option meant and the valid ones; only now, as
        # inspect costs every move milliseconds to import
        problem = _option_problem(cls, backend, options)
        raise TeleportError(problem or f"backend {backend!r}: {e}") from None


def _option_problem(cls: Type[Backend], backend: str, options: dict) -> Optional[str]:
    """What is wrong with ``options`` for ``cls`` (an unknown name, with the
    likely meant one and the valid ones; a required one missing), or None."""
    import inspect
    accepted, required = [], []
    for klass in cls.__mro__:          # a **options of __init__ goes on to the base class's
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            return None
        open_ended = False
        for p in list(params)[1:]:
            if p.kind == p.VAR_KEYWORD:
                open_ended = True
            elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                accepted.append(p.name)
                if p.default is p.empty and p.name not in options:
                    required.append(p.name)
        if not open_ended:
            break
    else:
        return None     # takes any option
    unknown = [name for name in options if name not in accepted]
    if unknown:
        import difflib
        name = unknown[0]
        close = difflib.get_close_matches(name, accepted, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (f"unknown option {name!r} for the {backend} backend{hint} "
                f"(its options: {', '.join(sorted(accepted))})")
    if required:
        return f"the {backend} backend needs the option {required[0]}= (e.g. teleport({backend!r}, {required[0]}=...))"
    return None
