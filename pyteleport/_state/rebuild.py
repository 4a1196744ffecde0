"""Constructors the target calls while loading module state.

Imported by a resumed process only if its payload refers to them: it must
stay tiny and import nothing.
"""
import sys


def _module(name):
    module = sys.modules.get(name)
    if module is None:
        import importlib
        module = importlib.import_module(name)
    return module


def module_attribute(module_name, name):
    """An object the module holds (random's global generator...), by reference."""
    return getattr(_module(module_name), name)


def runtime_class(module_name, qualname, metaclass, bases, namespace):
    """A class a library created at run time in its own module (e.g.
    ``deap.creator.create``): created again and set on the module at once,
    so that what refers to it by name (later in this same payload) finds it."""
    cls = metaclass(qualname.rpartition(".")[2], bases, namespace)
    cls.__qualname__ = qualname
    if "." not in qualname:
        setattr(_module(module_name), qualname, cls)
    return cls


def set_class_state(cls, state):
    for key, value in state.items():
        setattr(cls, key, value)


def protocol_restore(item):
    """A module's own ``__pyteleport_state__`` value, handed back to its
    ``__pyteleport_restore__``."""
    name, value = item
    module = _module(name)
    restore = getattr(module, "__pyteleport_restore__", None)
    if restore is None:
        raise RuntimeError(f"module {name} defines __pyteleport_state__ but not "
                           "__pyteleport_restore__ here")
    restore(value)
