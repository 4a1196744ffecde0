"""The generic part: attributes of imported modules that importing them
again on the target would not give back.

A module is imported again on the target (by reference); what travels by
value is what its own code does not create:

- the program's own modules (outside the standard library and
  site-packages): every attribute but submodules and the functions and
  classes their code defines;
- every other module (standard library, site-packages):
  * classes and functions the library created at run time in its own
    namespace (``deap.creator.create``): a class travels by value, is
    created again on the target and set on its module before anything that
    refers to it by name is loaded;
  * attributes holding the program's objects (a function, class or instance
    of ``__main__`` or of the program's modules: monkeypatches, objects a
    program stores on a library module);
  * a lock of the module's own (``logging._lock``) held at the move: it
    is held as often on the target;
  * for the library modules the program refers to (a module in the namespace
    of ``__main__`` or of one of its modules), attributes whose names do not
    occur in the module's source at all (``string.note = ...``).

Whatever a library module holds that cannot be serialised is left behind
(debug log), see :func:`prunable`.
"""
from __future__ import annotations

import _thread
import os
import sys
import types
from itertools import compress
from operator import attrgetter

from .._core.paths import RealPaths, is_system_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Set, Tuple

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep
_FunctionType = types.FunctionType
_is_function = _FunctionType.__instancecheck__
_is_class = type.__dict__["__instancecheck__"].__get__(type)   # isinstance(v, type), in C
_qualname = attrgetter("__qualname__")
_module_of = attrgetter("__module__")
_ModuleType = types.ModuleType
_PROGRAM = ("__main__", "__mp_main__")
# class attributes type() makes itself
_C_MADE = (type(object.__init__), type(str.join), type(len))  # slot wrapper, method, builtin
_CLASS_MADE = frozenset(("__module__", "__dict__", "__weakref__", "__doc__", "__slots__"))

_Lock = type(_thread.allocate_lock())
_RLock = _thread.RLock
_LOCK_TYPES = (_Lock, _RLock)

# source path -> identifiers it contains (the source does not change while we run)
_identifiers_cache: Dict[str, frozenset] = {}


def module_attrs(recipes: Dict[int, tuple], frame_locals=()) -> Tuple[Dict[str, Dict[str, Any]],
                                                                      Set[Tuple[str, str]]]:
    """``({module: {attribute: value}}, {(module, attribute) of library state})``.
    Run-time classes get their reduction in ``recipes`` (by id).
    ``frame_locals``: the moved frames' locals (modules imported in a function)."""
    real_path = RealPaths()
    user = {}
    library = []
    for name, module in list(sys.modules.items()):
        if name in _PROGRAM or not isinstance(module, _ModuleType):
            continue
        if name == "pyteleport" or name.startswith("pyteleport."):
            continue
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            real = real_path(path)
            if real.startswith(_PACKAGE_DIR):
                continue
            if not is_system_path(real, resolved=True):
                user[name] = module
                continue
        library.append((name, module))
    program = set(user)
    program.update(_PROGRAM)
    touched = _touched_modules(user, frame_locals)
    out = {}
    for name, module in user.items():
        attrs = _user_attrs(name, module, recipes)
        if attrs:
            out[name] = attrs
    from_library = set()
    for name, module in library:
        attrs, lib_keys = _library_attrs(name, module, program, name in touched, recipes)
        if attrs:
            out[name] = attrs
            from_library.update((name, k) for k in lib_keys)
    return out, from_library


def _touched_modules(user, frame_locals) -> Set[str]:
    """Names of the modules the program's own namespaces refer to."""
    names = set()
    spaces = [vars(sys.modules["__main__"])] + [vars(m) for m in user.values()] + list(frame_locals)
    for space in spaces:
        for value in list(space.values()):
            if type(value) is _ModuleType:
                names.add(value.__name__)
    return names


def _user_attrs(name, module, recipes) -> Dict[str, Any]:
    attrs = {}
    for key, value in list(vars(module).items()):
        if key.startswith("__") and key.endswith("__"):
            continue
        if isinstance(value, _ModuleType):
            continue
        if isinstance(value, (_FunctionType, type)) and getattr(value, "__module__", None) == name:
            if not (isinstance(value, type) and value.__qualname__ == key
                    and _runtime_class(value, module, recipes, True)):
                continue  # imported again with the module
        attrs[key] = value
    return attrs


def _library_attrs(name, module, program, touched, recipes):
    # runs over every attribute of every library module at each move: the
    # filtering is done by C loops (map, compress), Python code only sees the
    # few attributes that are not what a module's own code plainly defines
    d = module.__dict__
    keys = list(d)
    values = list(d.values())
    attrs = {}
    lib_keys = []
    fn_keys = list(compress(keys, map(_is_function, values)))
    if fn_keys:
        fns = list(compress(values, map(_is_function, values)))
        odd = map(_or, map(str.__ne__, fn_keys, map(_qualname, fns)),
                  map(name.__ne__, map(_module_of, fns)))
        for key, value in zip(compress(fn_keys, odd), compress(fns, odd)):
            owner = value.__module__
            if owner == name:
                if _resolves(value) or _in_source(key, module):
                    continue        # the module's own code defines it (or an alias of it)
                attrs[key] = value  # made at run time: travels by value
                lib_keys.append(key)
            elif owner in program:
                attrs[key] = value  # the program patched the library
    cls_keys = list(compress(keys, map(_is_class, values)))
    if cls_keys:
        classes = list(compress(values, map(_is_class, values)))
        for key, value in zip(cls_keys, classes):
            owner = value.__module__
            if owner == name:
                if value.__qualname__ == key and _runtime_class(value, module, recipes, touched):
                    attrs[key] = value
                    lib_keys.append(key)
            elif owner in program:
                attrs[key] = value
    # objects of the program's own types, kept on a library module
    present = set(map(type, values))
    kinds = {t for t in present if t.__module__ in program}
    if kinds:
        for key, value in d.items():
            if type(value) in kinds:
                attrs[key] = value
    # a lock of the module's own held at the move (a move at a signal inside
    # logging): the target's fresh one is held as well (see the pickler's rules)
    if not present.isdisjoint(_LOCK_TYPES):
        for key, value in d.items():
            if key not in attrs and _held(value):
                attrs[key] = value
                lib_keys.append(key)
    if touched:
        for key, value in d.items():
            t = type(value)
            if t is _FunctionType or t is _ModuleType or isinstance(value, type) or key in attrs:
                continue
            if not (key[:2] == "__" and key[-2:] == "__") and not callable(value) \
                    and not _in_source(key, module) and not _bound_elsewhere(key, value, module):
                attrs[key] = value      # set at run time: no such name in the module's code
                lib_keys.append(key)
    return attrs, lib_keys


def _held(value) -> bool:
    t = type(value)
    return (t is _RLock and value._is_owned()) or (t is _Lock and value.locked())


def _or(a, b):
    return a or b


def _in_source(key, module) -> bool:
    """Whether ``key`` occurs in ``module``'s source (True without a source:
    then nothing tells)."""
    names = _source_identifiers(module)
    return names is None or key in names


def _resolves(obj) -> bool:
    module = sys.modules.get(obj.__module__ or "")
    found = module
    for part in obj.__qualname__.split("."):
        found = getattr(found, part, None)
        if found is None:
            return False
    return found is obj


def _runtime_class(cls, module, recipes, touched=False) -> bool:
    """Whether ``cls`` (found in ``module`` under its own name) was made at
    run time rather than by a ``class`` statement of the module's source; if
    so its reduction goes into ``recipes``."""
    if id(cls) in recipes:
        return True
    d = cls.__dict__
    # a class statement puts __module__ first in the namespace; type(name,
    # bases, ns) adds it after ns's keys, and a method assigned later has the
    # qualified name of the function that made it.  An empty namespace looks
    # like `class X(B): pass`: only the source can tell, read only for the
    # modules the program refers to
    if next(iter(d), None) == "__module__":
        if not touched:
            init = d.get("__init__")
            if type(init) is not _FunctionType or init.__qualname__.startswith(cls.__qualname__ + "."):
                return False
    elif "__module__" not in d:
        return False    # a type made in C
    if type(cls) is not type:
        return False    # a metaclass may not take a namespace afterwards
    if _in_source(cls.__name__, module):
        return False    # namedtuple() and friends at the top of a module
    for value in d.values():
        if type(value) in _C_MADE:
            return False    # a type made in C (os.stat_result and other structseqs)
    if _bound_elsewhere(cls.__name__, cls, module):
        return False    # imported from a C module (decimal's signals from _decimal)
    recipes[id(cls)] = _class_recipe(cls)
    return True


def _class_recipe(cls) -> tuple:
    from . import rebuild
    d = cls.__dict__
    namespace = {"__module__": cls.__module__, "__doc__": d.get("__doc__")}
    slots = d.get("__slots__")
    if slots is not None:
        namespace["__slots__"] = slots
        slot_names = {slots} if isinstance(slots, str) else set(slots)
    else:
        slot_names = ()
    state = {k: v for k, v in d.items() if k not in _CLASS_MADE and k not in slot_names}
    return (rebuild.runtime_class, (cls.__module__, cls.__qualname__, type(cls), cls.__bases__,
                                    namespace), state, None, None, rebuild.set_class_state)


def _bound_elsewhere(key, value, module) -> bool:
    """Whether a module that ``module``'s source names has ``value`` under
    the same name: ``module`` got it by ``from ... import *`` (a fresh import
    does the same)."""
    names = _source_identifiers(module) or ()
    modules = sys.modules
    for other_name in list(modules):
        if other_name.rpartition(".")[2] in names:
            other = modules.get(other_name)
            if other is not module and getattr(other, "__dict__", {}).get(key, _bound_elsewhere) is value:
                return True
    return False


def _source_identifiers(module):
    """Every identifier in ``module``'s source, or None without a source."""
    path = getattr(module, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return None
    names = _identifiers_cache.get(path)
    if names is None:
        try:
            with open(path, "rb") as f:
                text = f.read()
        except OSError:
            return None
        names = frozenset(text.translate(_NON_IDENTIFIER).decode("latin-1").split())
        _identifiers_cache[path] = names
    return names


# bytes that cannot be part of an ASCII identifier become spaces
_NON_IDENTIFIER = bytes(c if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 95 or c >= 128)
                        else 32 for c in range(256))


def program_module_names(names) -> Set[str]:
    """Those of ``names`` that are ``__main__`` or the program's own modules."""
    real_path = RealPaths()
    out = set()
    for name in names:
        if name in _PROGRAM:
            out.add(name)
            continue
        path = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(path, str):
            real = real_path(path)
            if not real.startswith(_PACKAGE_DIR) and not is_system_path(real, resolved=True):
                out.add(name)
    return out
