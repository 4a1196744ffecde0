"""Serialising the snapshot's objects with dill, with pyteleport's own rules:

- generators (running ones in the moved chain, suspended ones anywhere) become
  morph generators that continue where they were;
- files open for reading are reopened by path at the same position; the
  standard streams map to the target's own; files open for writing refuse;
- large ``bytes``/``bytearray`` (and NumPy arrays, through their own protocol 5
  support) travel as out-of-band buffers, never copied into the pickle.
"""
from __future__ import annotations

import inspect
import io
import marshal
import pickle
import sys
import types
from typing import Callable, Dict, List, Tuple

import dill

from . import _rebuild
from ._errors import TeleportError

OUT_OF_BAND_MIN = 64 * 1024
RECURSION_LIMIT = 8000

_STD_STREAMS = ("stdin", "stdout", "stderr", "__stdin__", "__stdout__", "__stderr__")


class _Refusal(Exception):
    """An object that must not be moved (the message says why)."""


class StatePickler(dill.Pickler):
    def __init__(self, file, buffers: list, running: Dict[int, Callable], compile_suspended,
                 recipes: Dict[int, tuple]):
        super().__init__(file, protocol=5, buffer_callback=buffers.append)
        self._running = running
        self._compile_suspended = compile_suspended
        self._recipes = recipes

    def reducer_override(self, obj):
        t = type(obj)
        recipe = self._recipes.get(id(obj))
        if recipe is not None and (t is types.FunctionType or t is types.CodeType):
            return recipe   # a morph: its template (pickled once) and this frame's values
        if t is types.CodeType:
            return _reduce_code(obj)
        if t is dict:
            return _reduce_module_dict(obj)
        if t is bytes and len(obj) >= OUT_OF_BAND_MIN:
            return _rebuild.bytes_from, (pickle.PickleBuffer(obj),)
        if t is bytearray and len(obj) >= OUT_OF_BAND_MIN:
            return _rebuild.bytearray_from, (pickle.PickleBuffer(obj),)
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
        return NotImplemented

    def _reduce_generator(self, gen):
        fn = self._running.get(id(gen))
        if fn is not None:
            return _rebuild.start_generator, (fn,)
        state = inspect.getgeneratorstate(gen)
        if state == inspect.GEN_CLOSED:
            return _rebuild.exhausted_generator, ()
        if state == inspect.GEN_RUNNING:
            raise _Refusal("a running generator that is not on the moved stack cannot be moved")
        fn = self._compile_suspended(gen, self._recipes)
        if state == inspect.GEN_CREATED:
            return _rebuild.start_generator, (fn,)
        return _rebuild.resume_generator, (fn,)


def _reduce_code(code):
    """Code objects the compiler made marshal as they are (fast, compact, and
    no dill needed to load them); others are left to dill."""
    try:
        return _rebuild.code_from_marshal, (marshal.dumps(code),)
    except ValueError:
        return NotImplemented


def _reduce_module_dict(d):
    """A module's own namespace travels by reference to the module."""
    name = d.get("__name__")
    if type(name) is str:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__dict__", None) is d:
            return _rebuild.module_dict, (name,)
    return NotImplemented


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
        raise _Refusal(f"file {name!r} is open for writing (mode {mode!r}): writing files "
                       f"cannot be moved yet; close it before the move and reopen it after")
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


def _newline(f):
    # TextIOWrapper does not expose the newline argument; the default is right
    # for files opened without one, which is the common case
    return None


def dumps(root, running, compile_suspended, recipes) -> Tuple[bytes, List[pickle.PickleBuffer]]:
    """Pickle ``root``; large buffers are returned separately, not copied."""
    buffers: List[pickle.PickleBuffer] = []
    out = io.BytesIO()
    # dill's pickler is written in Python: each level of nesting in the data
    # costs several Python frames
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, RECURSION_LIMIT))
    try:
        StatePickler(out, buffers, running, compile_suspended, recipes).dump(root)
    finally:
        sys.setrecursionlimit(limit)
    return out.getvalue(), buffers


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


def loads(data: bytes, buffers):
    return dill.loads(data, buffers=buffers)


Refusal = _Refusal
