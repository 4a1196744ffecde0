"""What the pickler asks this package while a move is serialised: objects
to be pickled by reference to their module (random's global generator...),
and reductions for library objects that hold process resources (logging
handlers).  Source side only."""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Tuple

# module name -> attributes of it that stand for themselves: the target uses
# its own (fresh) object, whose state the adapter restores
_BY_REFERENCE = (
    ("random", "_inst"),
    ("numpy.random.mtrand", "_rand"),
)


# reductions of the classes made at run time (modules.py), for the move
# being serialised
_classes: Dict[int, tuple] = {}


def begin(class_recipes: Dict[int, tuple]) -> None:
    _classes.clear()
    _classes.update(class_recipes)


def end() -> None:
    _classes.clear()


def rules() -> Tuple[tuple, Dict[int, tuple]]:
    """``(types with a reduction here, {id: reduction})`` for this move."""
    from . import rebuild
    modules = sys.modules
    by_id = dict(_classes)
    for module_name, attr in _BY_REFERENCE:
        module = modules.get(module_name)
        obj = getattr(module, attr, None) if module is not None else None
        if obj is not None:
            by_id[id(obj)] = (rebuild.module_attribute, (module_name, attr))
    types = ()
    if "logging" in modules:
        types += (modules["logging"].Handler,)
    return types, by_id


def reduce(obj):
    """The reduction of an object of one of :func:`rules`'s types (a logging
    handler; locks are the pickler's own rule, see _payload/pickler.py)."""
    from .logging_tree import reduce_handler
    return reduce_handler(obj)


def prune(root: dict, library_attrs, module_state, dumps) -> bool:
    """Drop from ``root`` the library state that cannot be serialised (each
    value tried alone with ``dumps``); whether anything was dropped."""
    from .. import _log
    dropped = False
    modules = root["modules"]
    for name, key in sorted(library_attrs):
        attrs = modules.get(name)
        if attrs is None or key not in attrs:
            continue
        try:
            dumps(attrs[key])
        except Exception as e:
            _log.debug("not carrying %s.%s: %s: %s", name, key, type(e).__name__, e)
            del attrs[key]
            if not attrs:
                del modules[name]
            dropped = True
    kept = []
    for name, restore, value, from_library in module_state:
        if from_library:
            try:
                dumps(value)
            except Exception as e:
                _log.debug("not carrying the state of %s: %s: %s", name, type(e).__name__, e)
                dropped = True
                continue
        kept.append((name, restore, value))
    root["state"] = kept
    return dropped
