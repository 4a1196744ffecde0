"""Which module's state moves how: the built-in adapters, the libraries'
own registrations (:func:`register_state`) and the ``__pyteleport_state__``
protocol.  Source side: :func:`collect` runs every applicable ``save``."""
from __future__ import annotations

import sys

from .. import _log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Tuple

# trigger module -> adapter module (in this package): the adapter is loaded,
# and its save() called, only when the program imported the trigger module.
# Order matters on the target: restores run in this order, then registrations.
BUILTIN = (
    ("sys", "interpreter"),         # recursion limit, hooks, umask, gc, switch interval
    ("atexit", "exit_handlers"),
    ("faulthandler", "faults"),
    ("random", "random_state"),
    ("warnings", "warning_filters"),
    ("decimal", "decimal_context"),
    ("logging", "logging_tree"),
    ("numpy", "numpy_options"),
    ("numpy.random", "numpy_random"),
    ("torch", "torch_random"),
)

# module name -> (save, restore), from register_state()
_registered: Dict[str, Tuple[Callable[[], Any], Callable[[Any], None]]] = {}

# what save() returns when there is nothing to carry
NOTHING = None


def register_state(module_name: str, save: Callable[[], Any],
                   restore: Callable[[Any], None]) -> None:
    """Make the state of module ``module_name`` move with the program.

    At every move where ``module_name`` is imported, ``save()`` is called in
    the source process; what it returns (``None``: nothing to carry) is
    serialised with the program's objects, sharing their identity.  On the
    target, ``module_name`` is imported, every object is rebuilt, then
    ``restore(value)`` is called, before the program continues.  ``restore``
    must be found again by reference (a module-level function of an importable
    module).  Call this when your module is imported, so that it is in place
    on the target as well.  Registering the same module again replaces the
    earlier pair.
    """
    if not isinstance(module_name, str) or not callable(save) or not callable(restore):
        raise TypeError("register_state(module_name: str, save: callable, restore: callable)")
    _registered[module_name] = (save, restore)


def collect() -> List[Tuple[str, Callable[[Any], None], Any, bool]]:
    """``(module name, restore function, value, from_library)`` of every
    module state to carry.  A library adapter that fails is skipped (debug
    log): library state must never make a move fail."""
    out = []
    modules = sys.modules
    for trigger, adapter in BUILTIN:
        if trigger not in modules:
            continue
        try:
            mod = _adapter(adapter)
            value = mod.save()
        except Exception as e:   # a library in an unexpected state: skip it, never fail the move
            _log.debug("not carrying the state of %s: %s: %s", trigger, type(e).__name__, e)
            continue
        if value is not NOTHING:
            out.append((trigger, mod.restore, value, True))
    for name, (save, restore) in list(_registered.items()):
        if name in modules:
            value = save()
            if value is not NOTHING:
                out.append((name, restore, value, False))
    for name, module in list(modules.items()):
        save = getattr(module, "__dict__", {}).get("__pyteleport_state__") \
            if type(module).__name__ == "module" else None
        if save is not None and callable(save):
            value = save()
            if value is not NOTHING:
                from .rebuild import protocol_restore
                out.append((name, protocol_restore, (name, value), False))
    return out


def _adapter(name: str):
    import importlib
    return importlib.import_module(f"{__package__}.{name}")
