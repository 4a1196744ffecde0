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

import io
import marshal
import os
import stat
import sys
import types
# the C pickler directly: pickle.py imports re, struct and more (milliseconds
# per move); dill imports pickle itself when it is needed
from ._cpickle import PickleBuffer, Pickler

from . import _mpi_pickle, _rebuild
from ._errors import TeleportError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Tuple

OUT_OF_BAND_MIN = 64 * 1024
RECURSION_LIMIT = 8000

_STD_STREAMS = ("stdin", "stdout", "stderr", "__stdin__", "__stdout__", "__stderr__")


class _Refusal(Exception):
    """An object that must not be moved (the message says why)."""


def _refuse(message: str):
    raise _Refusal(message)


class _NeedsDill(Exception):
    """The C pickler met an object that only dill can serialise."""


class _Rules:
    """pyteleport's reductions, shared by the C pickler and dill's."""

    def _setup(self, running: Dict[int, Callable], compile_suspended, recipes: Dict[int, tuple]):
        self._running = running
        self._compile_suspended = compile_suspended
        self._recipes = recipes
        self._mpi = _mpi_pickle.mpi_types()    # None unless the program uses mpi4py

    def persistent_id(self, obj):
        # consulted for every object (the C pickler skips reducer_override
        # for exact bytes, bytearray and dict)
        t = type(obj)
        if t is bytes or t is bytearray:
            if len(obj) >= OUT_OF_BAND_MIN:
                return _rebuild.PID_BUFFER, t is bytes, PickleBuffer(obj)
        elif t is dict:
            name = _module_dict_name(obj)
            if name is not None:
                return _rebuild.PID_MODULE_DICT, name
        return None

    def reducer_override(self, obj):
        t = type(obj)
        recipe = self._recipes.get(id(obj))
        if recipe is not None and (t is types.FunctionType or t is types.CodeType):
            return recipe   # a morph: its template (pickled once) and this frame's values
        if t is types.CodeType:
            return _reduce_code(obj)
        if t is types.GeneratorType:
            return self._reduce_generator(obj)
        if t is _ndarray_type():
            # NumPy's own protocol-5 reduction hands the data over as an
            # out-of-band buffer (dill's numpy hook would copy it in-band)
            return obj.__reduce_ex__(5)
        if t is types.ModuleType:
            # modules travel by name and are imported again on the target
            return _rebuild.import_module, (obj.__name__,)
        if isinstance(obj, io.IOBase):
            return _reduce_file(obj)
        if t in (types.CoroutineType, types.AsyncGeneratorType):
            raise _Refusal(f"{t.__name__} objects cannot be moved yet")
        if t is types.FrameType or t is types.TracebackType:
            raise _Refusal(f"{t.__name__} objects belong to this process and cannot be moved")
        if self._mpi is not None and isinstance(obj, self._mpi):
            return _mpi_pickle.reduce(obj, _refuse)
        return NotImplemented

    def _reduce_generator(self, gen):
        fn = self._running.get(id(gen))
        if fn is not None:
            return _rebuild.start_generator, (fn,)
        import inspect   # only programs holding suspended generators pay for it
        state = inspect.getgeneratorstate(gen)
        if state == inspect.GEN_CLOSED:
            return _rebuild.exhausted_generator, ()
        if state == inspect.GEN_RUNNING:
            raise _Refusal("a running generator that is not on the moved stack cannot be moved")
        fn = self._compile_suspended(gen, self._recipes)
        if state == inspect.GEN_CREATED:
            return _rebuild.start_generator, (fn,)
        return _rebuild.resume_generator, (fn,)


class _FastPickler(_Rules, Pickler):
    """The C pickler; gives up (``_NeedsDill``) on what must travel by value."""

    def __init__(self, file, buffers: list, *rules):
        super().__init__(file, protocol=5, buffer_callback=buffers.append)
        self._setup(*rules)

    def reducer_override(self, obj):
        t = type(obj)
        if t is types.FunctionType and id(obj) not in self._recipes:
            return NotImplemented if _by_reference(obj) else _reduce_function(obj)
        if isinstance(obj, type):
            if not _by_reference(obj):
                raise _NeedsDill   # classes by value: dill knows how
            return NotImplemented
        if t is types.CellType:
            try:
                return _rebuild.new_cell, (obj.cell_contents,)
            except ValueError:
                return _rebuild.new_cell, ()
        return super().reducer_override(obj)


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
    return (_rebuild.function, (fn.__code__, name or namespace, fn.__name__, fn.__defaults__,
                                fn.__closure__), state, None, None, _rebuild.set_function_state)


def _needs_dill(root) -> bool:
    """Cheap look at ``__main__``'s namespace: a class defined there travels
    by value, which only dill does; skip the C pickler's attempt then."""
    main = root.get("main", {}) if isinstance(root, dict) else {}
    return any(isinstance(v, type) and getattr(v, "__module__", None) == "__main__"
               for v in main.values())


def _reduce_code(code):
    """Code objects the compiler made marshal as they are (fast, compact, and
    no dill needed to load them); others are left to dill."""
    try:
        return _rebuild.code_from_marshal, (marshal.dumps(code),)
    except ValueError:
        return NotImplemented


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
            return _rebuild.std_stream, (name,)
    if isinstance(f, (io.StringIO, io.BytesIO)):
        return NotImplemented
    name = getattr(f, "name", None)
    mode = getattr(f, "mode", "rb" if not isinstance(f, io.TextIOBase) else "r")
    if f.closed:
        return _rebuild.closed_file, (name, mode)
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
    return _rebuild.reopen, (name, mode, position, getattr(f, "encoding", None) if text else None,
                             getattr(f, "errors", None) if text else None,
                             None if not text else _newline(f), buffering)


def _reduce_writable_file(f, name: str, mode: str):
    """A file open for writing: flushed now, reopened on the target without
    truncation, at the same position; the target checks it is the same file
    as it was here (see :func:`_rebuild.reopen_for_writing`)."""
    try:
        f.flush()
        position = f.tell()
        here = os.fstat(f.fileno())
    except (OSError, ValueError) as e:
        raise _Refusal(f"file {name!r} is open for writing (mode {mode!r}) and cannot be flushed "
                       f"or tell its position ({e})") from None
    if name == os.devnull:
        return _rebuild.reopen_devnull, (mode,)
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
    return _rebuild.reopen_for_writing, (
        name, mode, position, here.st_size, here.st_mtime_ns,
        getattr(f, "encoding", None) if text else None, getattr(f, "errors", None) if text else None)


def _newline(f):
    # TextIOWrapper does not expose the newline argument; the default is right
    # for files opened without one, which is the common case
    return None


def dumps(root, running, compile_suspended, recipes) -> Tuple[bytes, List[PickleBuffer]]:
    """Pickle ``root``; large buffers are returned separately, not copied."""
    rules = (running, compile_suspended, recipes)
    # pickling recurses once per level of nesting in the data (dill's pickler,
    # written in Python, several frames per level)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, RECURSION_LIMIT))
    try:
        makers = (_dill_pickler,) if _needs_dill(root) else (_FastPickler, _dill_pickler)
        for make in makers:
            buffers = []
            out = io.BytesIO()
            try:
                make(out, buffers, *rules).dump(root)
            except (_Refusal, TeleportError):
                raise
            except Exception:
                if make is _dill_pickler:
                    raise
                continue   # _NeedsDill, a type only dill knows, a recursive closure
            return out.getvalue(), buffers
    finally:
        sys.setrecursionlimit(limit)
    raise AssertionError("unreachable")


def diagnose(roots: List[Tuple[str, object]], running, compile_suspended, recipes) -> str:
    """Find which named root cannot be pickled (only called after a failure)."""
    for label, value in roots:
        try:
            dumps(value, running, compile_suspended, recipes)
        except TeleportError as e:
            return f"{label}: {e}"
        except _Refusal as e:
            return f"{label}: {e}"
        except Exception as e:  # pickling raises many types; all mean "cannot move this"
            return f"{label}: {_clean(e)}"
    return ""


def _clean(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text.splitlines()[0]

