"""Serialising the snapshot's objects, with pyteleport's own rules:

- generators (running ones in the moved chain, suspended ones anywhere) become
  morph generators that continue where they were;
- morphs travel as their template (once) and each frame's values;
- files open for reading are reopened by path at the same position, files
  open for writing too (flushed here, never truncated there); the
  standard streams map to the target's own;
- modules and module namespaces travel by reference;
- large ``bytes``/``bytearray`` (and NumPy arrays, through their own protocol 5
  support) travel as out-of-band buffers, never copied into the pickle.

The C pickler does the work whenever it can: it is fast, and what it writes
loads without dill.  Functions and classes that must travel by value (defined
in ``__main__``, lambdas, nested functions) need dill: then the whole state is
pickled again with dill's pickler, under the same rules.
"""
from __future__ import annotations

import copyreg
import io
import marshal
import os
import stat
import sys
import types
# the C pickler directly: pickle.py imports re, struct and more (milliseconds
# per move); dill imports pickle itself when it is needed
from .cpickle import PickleBuffer, Pickler

from ..mpi import _pickling as _mpi_pickling
from .._state import pickling as _state_pickling
from . import classes as _classes, rebuild
from .._errors import TeleportError
from .._core.cpython import ITERTOOLS_PICKLABLE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

_LAZY_IMPORT = getattr(types, "LazyImportType", None)   # 3.15+
# dill's code saver reads co_lnotab, which 3.15 removed
_DILL_SAVES_CODE = hasattr(types.CodeType, "co_lnotab")

OUT_OF_BAND_MIN = 64 * 1024
_HEAP_TYPE = 1 << 9     # Py_TPFLAGS_HEAPTYPE
RECURSION_LIMIT = 8000

_STD_STREAMS = ("stdin", "stdout", "stderr", "__stdin__", "__stdout__", "__stderr__")


class _Refusal(Exception):
    """An object that must not be moved (the message says why)."""


def _refuse(message: str):
    raise _Refusal(message)


class MainGlobal:
    """One global of ``__main__``, put into the target's ``__main__`` as
    soon as it is rebuilt; all of them are pickled ahead of the rest (see
    :func:`main_globals_first`)."""
    __slots__ = ("name", "value")

    def __init__(self, name: str, value):
        self.name, self.value = name, value


def main_globals_first(main_globals: Dict[str, object]) -> List[MainGlobal]:
    """``__main__``'s globals in the order the target should rebuild them
    before anything else: classes, functions and modules first, then the
    others in the order the program made them.  Rebuilding an object (its
    ``__setstate__``, a callable its ``__reduce__`` names) then finds the
    globals it reads in ``__main__``, as it would here."""
    definitions = [MainGlobal(k, v) for k, v in main_globals.items() if isinstance(v, _DEFINITIONS)]
    others = [MainGlobal(k, v) for k, v in main_globals.items() if not isinstance(v, _DEFINITIONS)]
    return definitions + others


_DEFINITIONS = (type, types.FunctionType, types.BuiltinFunctionType, types.ModuleType)


class _Rules:
    """pyteleport's reductions, shared by the C pickler and dill's."""

    def _setup(self, running: Dict[int, Callable], compile_suspended, recipes: Dict[int, tuple]):
        self._deferred = None   # a list in dumps()'s deep mode
        self._running = running
        self._compile_suspended = compile_suspended
        self._recipes = recipes
        self._mpi = _mpi_pickling.mpi_types()    # None unless the program uses mpi4py
        self._buffer_pids = {}
        self._enum = getattr(sys.modules.get("enum"), "Enum", None)
        self._type_var = getattr(sys.modules.get("typing"), "TypeVar", None)
        self._singletons = _named_singletons()
        _add_loaded_reductions()
        # module state: library objects by reference, logging handlers, run-time classes
        self._state_types, self._state_ids = _state_pickling.rules()

    def _buffer_pid(self, obj, is_bytes: bool) -> list:
        """One persistent id per buffer, however many references it has: a
        list, which the memo then shares, and which the target turns into
        the rebuilt object on its first load (see rebuild.persistent_load),
        so every reference gets that one object (and one buffer is sent)."""
        known = self._buffer_pids.get(id(obj))
        if known is None:
            known = self._buffer_pids[id(obj)] = (obj, [rebuild.PID_BUFFER, is_bytes, PickleBuffer(obj)])
        return known[1]

    def _state_reduce(self, obj):
        if self._state_ids:
            reduction = self._state_ids.get(id(obj))
            if reduction is not None:
                return reduction
        if self._state_types and isinstance(obj, self._state_types):
            return _state_pickling.reduce(obj)
        return NotImplemented

    def persistent_id(self, obj):
        # consulted for every object, before the memo (the C pickler skips
        # reducer_override for exact bytes, bytearray and dict)
        t = type(obj)
        if t is bytes or t is bytearray:
            if len(obj) >= OUT_OF_BAND_MIN:
                return self._buffer_pid(obj, t is bytes)
        elif t is dict:
            name = _module_dict_name(obj)
            if name is not None:
                return rebuild.PID_MODULE_DICT, name
        return None

    def reducer_override(self, obj):
        t = type(obj)
        recipe = self._recipes.get(id(obj))
        if recipe is not None and (t is types.FunctionType or t is types.CodeType):
            return recipe   # a morph: its template (pickled once) and this frame's values
        reduction = self._state_reduce(obj)
        if reduction is not NotImplemented:
            return reduction
        if t is types.CodeType:
            return _reduce_code(obj)
        if t is types.GeneratorType or t is types.CoroutineType:
            return self._reduce_generator(obj)
        if t is _ndarray_type():
            # NumPy's own protocol-5 reduction hands the data over as an
            # out-of-band buffer (dill's numpy hook would copy it in-band)
            return obj.__reduce_ex__(5)
        if t is MainGlobal:
            return rebuild.main_global, (obj.name, obj.value)
        if t is types.ModuleType:
            # modules travel by name and are imported again on the target,
            # with the submodules loaded on them here
            return rebuild.import_module, (obj.__name__,) + _loaded_submodules(obj)
        if isinstance(obj, io.IOBase):
            return _reduce_file(obj)
        if t is types.AsyncGeneratorType:
            raise _Refusal("async generators cannot be moved yet")
        if t is types.FrameType or t is types.TracebackType:
            raise _Refusal(f"{t.__name__} objects belong to this process and cannot be moved")
        if self._mpi is not None and isinstance(obj, self._mpi):
            return _mpi_pickling.reduce(obj, _refuse)
        if t is _LAZY_IMPORT:
            # 3.15 (PEP 810): a module's lazy import not used yet; a function
            # travelling by value copies the globals it names, proxies included
            return rebuild.same, (obj.resolve(),)
        if not ITERTOOLS_PICKLABLE and t.__module__ == "itertools":
            from . import itertools_state
            return itertools_state.reduce(obj, _refuse)
        if isinstance(obj, type):
            # by value only classes made by class statements (heap types):
            # a C type is found by name, or under the name a module gives it
            if _by_reference(obj):
                return NotImplemented
            alias = _type_alias(obj)
            if alias is not None:
                return getattr, (rebuild.import_module(alias[0]), alias[1])
            if not obj.__flags__ & _HEAP_TYPE:
                return NotImplemented
            return _classes.reduce_class(obj)
        if self._enum is not None and isinstance(obj, self._enum) and not _by_reference(t):
            return _classes.reduce_enum_member(obj) or NotImplemented
        reduction = _REDUCTIONS.get(t)
        if reduction is not None:
            return reduction(obj)
        if t is self._type_var and not _type_var_by_reference(obj):
            return _classes.reduce_type_var(obj)
        name = self._singletons.get(id(obj))
        if name is not None:
            return getattr, (rebuild.import_module(name[0]), name[1])
        if _forwards_attributes(t):
            return _reduce_with_state_setter(obj)
        if self._deferred is not None and _plain_instance(t):
            # deep data: the object now, its attributes in a later batch
            self._deferred.append((obj, _instance_state(obj)))
            return copyreg.__newobj__, (t,)
        return NotImplemented

    def _reduce_generator(self, gen):
        fn = self._running.get(id(gen))
        if fn is not None:
            return rebuild.start_generator, (fn,)
        from .._core.snapshot import suspendable_state
        state = suspendable_state(gen)
        kind = "generator" if type(gen) is types.GeneratorType else "coroutine"
        if state == "closed":
            return (rebuild.exhausted_generator if kind == "generator" else rebuild.closed_coroutine), ()
        if state == "running":
            raise _Refusal(f"a running {kind} that is not on the moved stack cannot be moved")
        fn = self._compile_suspended(gen, self._recipes)
        if state == "created":
            return rebuild.start_generator, (fn,)
        return rebuild.resume_generator, (fn,)


class _FastPickler(_Rules, Pickler):
    """The C pickler; gives up on what only dill can serialise."""

    def __init__(self, file, buffers: list, *rules):
        super().__init__(file, protocol=5, buffer_callback=buffers.append)
        self._setup(*rules)

    def reducer_override(self, obj):
        t = type(obj)
        if isinstance(obj, type):
            reduction = self._state_reduce(obj)   # a class made at run time in a library
            if reduction is not NotImplemented:
                return reduction
        if t is types.FunctionType and id(obj) not in self._recipes:
            return NotImplemented if _by_reference(obj) else _reduce_function(obj)
        if t is types.CellType:
            try:
                return rebuild.new_cell, (obj.cell_contents,)
            except ValueError:
                return rebuild.new_cell, ()
        return super().reducer_override(obj)


def _is_package(module) -> bool:
    # pyteleport's own submodules: the target imports what it needs itself
    return getattr(module, "__path__", None) is not None and module.__name__ != "pyteleport"


def _loaded_submodules(package) -> tuple:
    """Names of the submodules loaded here and set on ``package`` (by the
    import system, as ``import a.b`` does), theirs included, parents first;
    none for a plain module."""
    if not _is_package(package):
        return ()
    found = []
    todo = [package]
    modules = sys.modules
    while todo:
        parent = todo.pop()
        prefix = parent.__name__ + "."
        for attr, value in list(vars(parent).items()):
            if type(value) is types.ModuleType and getattr(value, "__name__", None) == prefix + attr \
                    and modules.get(prefix + attr) is value:
                found.append(prefix + attr)
                if _is_package(value):
                    todo.append(value)
    return tuple(found)


def _dill_pickler(file, buffers: list, *rules):
    import dill

    class _DillPickler(_Rules, dill.Pickler):
        def __init__(self):
            super().__init__(file, protocol=5, buffer_callback=buffers.append)
            self._setup(*rules)

    return _DillPickler()


def _by_reference(obj) -> bool:
    """Whether ``obj`` (a function or class) is found again by its module and
    qualified name, so that it can travel by reference."""
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    if module is None or module.__name__ in ("__main__", "__mp_main__"):
        return False
    found = module
    for part in getattr(obj, "__qualname__", "").split("."):
        found = getattr(found, part, None)
        if found is None:
            return False
    return found is obj


# modules that name C types whose own __module__ and __qualname__ find
# nothing (builtins.weakref, builtins.function, builtins.mappingproxy, ...)
_ALIAS_MODULES = ("types", "weakref", "collections", "collections.abc", "io", "itertools",
                  "functools", "operator", "re", "array", "datetime", "decimal")
_aliases: Dict[int, Tuple[str, str]] = {}


def _type_alias(t: type) -> Optional[Tuple[str, str]]:
    """``(module, name)`` where a class is found though its own names lie:
    under another name in its own module (3.9's ``_json.make_encoder`` is
    ``_json.Encoder``, a C type made at run time), or in a standard module
    for a C type (``weakref.ReferenceType`` is ``builtins.weakref``); None
    if nothing names it (a class of the program travels by value)."""
    module = sys.modules.get(getattr(t, "__module__", None) or "")
    if module is not None and module.__name__ not in ("__main__", "__mp_main__"):
        for key, value in list(vars(module).items()):
            if value is t and not key.startswith("__"):
                return module.__name__, key
    if t.__flags__ & _HEAP_TYPE:
        return None
    alias = _aliases.get(id(t))
    if alias is None:
        for name in _ALIAS_MODULES:
            module = sys.modules.get(name)
            for key, value in (vars(module).items() if module is not None else ()):
                if isinstance(value, type) and not key.startswith("_"):
                    _aliases.setdefault(id(value), (name, key))   # C types live for good
        alias = _aliases.get(id(t))
    return alias


def _type_var_by_reference(tv) -> bool:
    """Whether a TypeVar is found again as a module global (how TypeVar
    pickles itself); not those of ``__main__``, which is empty then."""
    module = sys.modules.get(tv.__module__)
    return module is not None and module.__name__ not in ("__main__", "__mp_main__") and \
        getattr(module, tv.__name__, None) is tv


def _reduce_function(fn):
    """A function that travels by value: its code, its namespace (by module
    reference when it is a module's), closure and attributes.  A closure that
    contains the function itself recurses without end: dill then takes over."""
    namespace = fn.__globals__
    name = _module_dict_name(namespace)
    state = {
        "__qualname__": fn.__qualname__, "__module__": fn.__module__, "__doc__": fn.__doc__,
        "__kwdefaults__": fn.__kwdefaults__, "__annotations__": fn.__annotations__,
        "__dict__": fn.__dict__,
    }
    return (rebuild.function, (fn.__code__, name or namespace, fn.__name__, fn.__defaults__,
                                fn.__closure__), state, None, None, rebuild.set_function_state)


def _reduce_match(m):
    """A ``re.Match`` is found again by matching its pattern on its string
    (both travel): ``search`` or ``fullmatch`` from the same ``pos`` and
    ``endpos``, when that gives this very match (checked here)."""
    spans = [m.span(g) for g in range(m.re.groups + 1)]
    for method in ("search", "fullmatch"):
        again = getattr(m.re, method)(m.string, m.pos, m.endpos)
        if again is not None and [again.span(g) for g in range(m.re.groups + 1)] == spans:
            return rebuild.regex_match, (m.re, m.string, m.pos, m.endpos, method)
    raise _Refusal(f"re.Match object {m!r} cannot be moved: it is not the first match of its "
                   "pattern from its position (a finditer() result?); keep what it matched "
                   "(m.group(), m.span()) instead")


_REDUCTIONS = {
    # a bound method by name (its default) fails when the name is not the
    # function's own (simpy binds classes: env.process = MethodType(Process, env))
    types.MethodType: lambda m: (rebuild.bound_method, (m.__func__, m.__self__)),
    # a slot method bound through super() (super().__init__ of object): by
    # name it would be the instance's own, overriding method
    types.MethodWrapperType: lambda w: (rebuild.bound_slot, (w.__objclass__, w.__name__, w.__self__)),
    staticmethod: lambda d: (staticmethod, (d.__func__,)),
    classmethod: lambda d: (classmethod, (d.__func__,)),
    property: lambda p: (property, (p.fget, p.fset, p.fdel, p.__doc__)),
    types.MappingProxyType: lambda d: (rebuild.mapping_proxy, (dict(d),)),
}


# type -> whether its instances are rebuilt through rebuild.set_instance_state
_FORWARDING: Dict[type, bool] = {}


def _forwards_attributes(t: type) -> bool:
    """A class with a Python ``__getattr__`` and pickle's default
    reduction: unpickling looks ``__setstate__`` up on the still empty
    instance, and a ``__getattr__`` that forwards to an attribute not set
    yet recurses until RecursionError (tqdm's wrapper of a bar's stream)."""
    known = _FORWARDING.get(t)
    if known is None:
        known = type(getattr(t, "__getattr__", None)) is types.FunctionType and _default_reduction(t)
        _FORWARDING[t] = known
    return known


def _default_reduction(t: type) -> bool:
    """Instances of ``t`` are pickled by pickle's default reduction, and
    nothing of their own runs as they are rebuilt (no __setstate__)."""
    return (t.__reduce_ex__ is object.__reduce_ex__ and t.__reduce__ is object.__reduce__
            and getattr(t, "__setstate__", None) in (None, _OBJECT_SETSTATE)
            and not hasattr(t, "__getnewargs_ex__") and not hasattr(t, "__getnewargs__"))


_OBJECT_SETSTATE = getattr(object, "__setstate__", None)


def _instance_state(obj) -> tuple:
    """``(__dict__ or None, {slot: value} or None)``, read without looking
    anything up on the instance (see _forwards_attributes)."""
    slots = {}
    for name in copyreg._slotnames(type(obj)):
        try:
            slots[name] = object.__getattribute__(obj, name)
        except AttributeError:
            pass
    return getattr(obj, "__dict__", None) or None, slots or None


def _reduce_with_state_setter(obj):
    # the state read here, not through obj.__getstate__: before 3.11 that is
    # looked up on the instance, and forwarded to the wrapped object
    return copyreg.__newobj__, (type(obj),), _instance_state(obj), None, None, rebuild.set_instance_state


# type -> whether dumps()'s deep mode may set its instances' attributes late
_PLAIN: Dict[type, bool] = {}


def _plain_instance(t: type) -> bool:
    """Instances pickled by the default reduction (_default_reduction, and
    the default __getstate__), hashed by identity or not at all: their
    attributes may be set after every container holding them is rebuilt (a
    dataclass is unhashable)."""
    known = _PLAIN.get(t)
    if known is None:
        known = (t.__flags__ & _HEAP_TYPE and type(t) is type and _default_reduction(t)
                 and getattr(t, "__getstate__", _OBJECT_GETSTATE) is _OBJECT_GETSTATE
                 # never a dict key or set item (unhashable), or one by identity
                 and (t.__hash__ is None or (t.__hash__ is object.__hash__ and t.__eq__ is object.__eq__))
                 and t.__new__ is object.__new__)
        known = bool(known)
        _PLAIN[t] = known
    return known


_OBJECT_GETSTATE = getattr(object, "__getstate__", None)


def _reduce_rlock(r):
    """An RLock held by this (the only) thread is held as often on the
    target; a free one is made anew (dill's would come back held by no
    thread, and deadlock the first ``with``)."""
    count = 0
    if r._is_owned():
        state = r._release_save()
        r._acquire_restore(state)
        count = state[0]
    return rebuild.new_rlock, (count,)


def _reduce_lock(lock):
    return rebuild.new_lock, (lock.locked(),)


def _add_loaded_reductions() -> None:
    """Reductions for types of modules the program loaded (never imported
    here): locks, ``_struct.Struct`` made again from its format, ``re.Match``
    matched again."""
    thread = sys.modules.get("_thread")
    if thread is not None:
        _REDUCTIONS[thread.LockType] = _reduce_lock
        _REDUCTIONS[thread.RLock] = _reduce_rlock
    struct = sys.modules.get("_struct")
    if struct is not None:
        _REDUCTIONS[struct.Struct] = lambda s: (type(s), (s.format,))
    re = sys.modules.get("re")
    if re is not None:
        _REDUCTIONS[re.Match] = _reduce_match
    pools = sys.modules.get("concurrent.futures.thread")
    if pools is not None:
        # here, not at the top: it imports threading and queue (loaded with the pool)
        from .._threads.pools import reduce_pool
        _REDUCTIONS[pools.ThreadPoolExecutor] = reduce_pool
    json_c = sys.modules.get("_json")
    if json_c is not None:
        _REDUCTIONS[json_c.make_encoder] = _reduce_json_encoder
        _REDUCTIONS[json_c.make_scanner] = _reduce_json_scanner


_NAN = float("nan")


def _reduce_json_encoder(e):
    """json's C encoder (``iterencode`` holds one while it runs) is made
    again from its settings; ``allow_nan``, which it does not show, is
    found by encoding a NaN (nothing else happens for a float)."""
    try:
        e(_NAN, 0)
        allow_nan = True
    except ValueError:
        allow_nan = False
    return rebuild.json_encoder, (e.markers, e.default, e.encoder, e.indent, e.key_separator,
                                  e.item_separator, e.sort_keys, e.skipkeys, allow_nan)


def _reduce_json_scanner(s):
    """json's C scanner (a ``JSONDecoder``'s ``scan_once``), made again
    from the settings it read from its decoder."""
    # its members are the settings (strict, object_hook, ...; 3.15 adds array_hook)
    settings = {k: getattr(s, k) for k, v in vars(type(s)).items() if type(v) is _MemberDescriptor}
    return rebuild.json_scanner, (settings,)


_MemberDescriptor = type(types.FunctionType.__globals__)


def _named_singletons() -> Dict[int, Tuple[str, str]]:
    """Module-level sentinels that a class carried by value refers to and
    that must stay themselves: a dataclass's fields compare their kind and
    default with ``is`` (``dataclasses.MISSING``, ``_FIELD``...)."""
    out = {}
    dataclasses = sys.modules.get("dataclasses")
    if dataclasses is not None:
        for key, value in vars(dataclasses).items():
            if not key.startswith("__") and (type(value).__module__ == "dataclasses" or
                                             type(value) is types.MappingProxyType) \
                    and not isinstance(value, type):
                out[id(value)] = ("dataclasses", key)
    return out


def _reduce_code(code):
    """Code objects the compiler made marshal as they are (fast, compact, and
    no dill needed to load them); others are left to dill."""
    try:
        return rebuild.code_from_marshal, (marshal.dumps(code),)
    except ValueError:
        if _DILL_SAVES_CODE:
            return NotImplemented
    # constants marshal cannot write (a morph's values) travel as pickled values
    consts, fills = [], []
    for index, value in enumerate(code.co_consts):
        try:
            marshal.dumps(value)
            consts.append(value)
        except ValueError:
            consts.append(None)
            fills.append((index, value))
    return rebuild.fill_code, (code.replace(co_consts=tuple(consts)), tuple(fills))


def _module_dict_name(d):
    """The module whose namespace ``d`` is, if any."""
    name = d.get("__name__")
    if type(name) is str:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__dict__", None) is d:
            return name
    return None


def _ndarray_type():
    numpy = sys.modules.get("numpy")
    return getattr(numpy, "ndarray", None) if numpy is not None else None


def _reduce_file(f):
    for name in _STD_STREAMS:
        if f is getattr(sys, name, None):
            return rebuild.std_stream, (name,)
    if isinstance(f, (io.StringIO, io.BytesIO)):
        return NotImplemented
    name = getattr(f, "name", None)
    mode = getattr(f, "mode", "rb" if not isinstance(f, io.TextIOBase) else "r")
    if f.closed:
        return rebuild.closed_file, (name, mode)
    if not isinstance(name, str):
        raise _Refusal(f"file object {f!r} has no path and cannot be reopened on the target")
    if any(c in mode for c in "wax+"):
        return _reduce_writable_file(f, name, mode)
    try:
        position = f.tell()
    except OSError as e:
        raise _Refusal(f"file {name!r}: cannot tell its position ({e}); text files iterated "
                       "with for/next() cannot be moved, read them with readline()") from None
    text = isinstance(f, io.TextIOBase)
    buffering = -1
    return rebuild.reopen, (name, mode, position, getattr(f, "encoding", None) if text else None,
                             getattr(f, "errors", None) if text else None,
                             None if not text else _newline(f), buffering)


def _reduce_writable_file(f, name: str, mode: str):
    """A file open for writing: flushed now, reopened on the target without
    truncation, at the same position; the target checks it is the same file
    as it was here (see :func:`rebuild.reopen_for_writing`)."""
    try:
        f.flush()
        position = f.tell()
        here = os.fstat(f.fileno())
    except (OSError, ValueError) as e:
        raise _Refusal(f"file {name!r} is open for writing (mode {mode!r}) and cannot be flushed "
                       f"or tell its position ({e})") from None
    if name == os.devnull:
        return rebuild.reopen_devnull, (mode,)
    try:
        by_name = os.stat(name)
    except OSError:
        by_name = None
    if not stat.S_ISREG(here.st_mode) or by_name is None or \
            (by_name.st_dev, by_name.st_ino) != (here.st_dev, here.st_ino):
        what = "is not a regular file" if not stat.S_ISREG(here.st_mode) else \
            "no longer has this path (renamed, deleted or the directory changed)"
        raise _Refusal(f"file {name!r} is open for writing (mode {mode!r}) but {what}, so it "
                       "cannot be reopened on the target; close it before the move")
    text = isinstance(f, io.TextIOBase)
    return rebuild.reopen_for_writing, (
        name, mode, position, here.st_size, here.st_mtime_ns,
        getattr(f, "encoding", None) if text else None, getattr(f, "errors", None) if text else None)


def _newline(f):
    # TextIOWrapper does not expose the newline argument; the default is right
    # for files opened without one, which is the common case
    return None


def dumps(root, running, compile_suspended, recipes) -> Tuple[bytes, List[PickleBuffer]]:
    """Pickle ``root``; large buffers are returned separately, not copied.

    Data nested deeper than the interpreter lets the pickler recurse (a long
    linked list) is pickled again in deep mode: plain objects go first as
    empty instances and their attributes follow in batches after the root,
    in the same stream (one memo), each batch shallow; rebuild.load_state()
    applies them once the root is rebuilt."""
    rules = (running, compile_suspended, recipes)
    # pickling recurses once per level of nesting in the data (dill's pickler,
    # written in Python, several frames per level)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, RECURSION_LIMIT))
    try:
        try:
            return _dump(root, rules, deep=False)
        except RecursionError:
            return _dump(root, rules, deep=True)
    finally:
        sys.setrecursionlimit(limit)


def _dump(root, rules, deep: bool) -> Tuple[bytes, List[PickleBuffer]]:
    for make in (_FastPickler, _dill_pickler):
        buffers = []
        out = io.BytesIO()
        try:
            pickler = make(out, buffers, *rules)
            if deep:
                pickler._deferred = []
            pickler.dump(root)
            while deep and pickler._deferred:
                batch, pickler._deferred = pickler._deferred, []
                pickler.dump(batch)
        except (_Refusal, TeleportError):
            raise
        except Exception:       # RecursionError too: dill's pickler may go deeper
            if make is _dill_pickler:
                raise
            continue   # a type only dill knows, a recursive closure
        return out.getvalue(), buffers
    raise AssertionError("unreachable")


def diagnose(roots: List[Tuple[str, object]], running, compile_suspended, recipes) -> str:
    """Find which named root cannot be pickled (only called after a failure)."""
    for label, value in roots:
        reason = unpicklable({label: value}, running, compile_suspended, recipes).get(label)
        if reason is not None:
            return f"{label}: {reason}"
    return ""


def unpicklable(values: Dict[str, Any], running, compile_suspended, recipes) -> Dict[str, str]:
    """Which of ``values`` cannot be pickled, and why (each tried alone)."""
    found = {}
    for name, value in values.items():
        try:
            dumps(value, running, compile_suspended, recipes)
        except (TeleportError, _Refusal) as e:
            found[name] = str(e)
        except Exception as e:   # pickling raises many types; all mean "cannot move this"
            found[name] = _clean(e)
    return found


# what libraries say when their objects refuse to be pickled -> what to do about it
_HINTS = {
    "pool objects cannot be passed between processes or pickled":
        "a multiprocessing pool (even closed) cannot move: its worker processes stay here. "
        "Drop it before the move (`del pool`, or use it in a `with` block inside a function) "
        "and make a new one after it",
}


def _clean(e: BaseException) -> str:
    text = (str(e).strip() or type(e).__name__).splitlines()[0]
    return _HINTS.get(text, text)

