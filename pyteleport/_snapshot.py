"""Snapshot of a running program: the chain of Python frames from a call site
up to the ``__main__`` module frame, each with its locals, cells, pending stack
values and (3.9/3.10) open blocks, plus how each frame is to resume.

Nothing here serialises or compiles anything; :mod:`._morph` turns a
:class:`FrameState` into code and :mod:`._pickler` turns objects into bytes.
"""
from __future__ import annotations

import sys
import types

from . import _cpython
from ._cpython import NULL, OPS, EXCEPT_HANDLER_BLOCK
from ._errors import TeleportError
from ._stack_analysis import AnalysisError, analyze, stack_effect

# no inspect, dataclasses or typing here: they cost every move milliseconds
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

# inspect.CO_* (the same on every CPython)
CO_OPTIMIZED = 0x0001
CO_GENERATOR = 0x0020
CO_ASYNC = 0x0080 | 0x0100 | 0x0200   # CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR


def describe(frame) -> str:
    """``file:line, in function`` for messages."""
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno}, in {code.co_name}"


class Resume:
    """How a frame continues once its state is rebuilt.

    ``result``  the current instruction finished: push ``value`` (or the value
                of calling ``inner``) in place of the items it consumed and
                continue after it.
    ``reexec``  execute the current instruction again with the whole stack
                (it resumes a generator held on the stack).
    ``yield``   a suspended generator: wait at its yield for the next send().
    ``start``   a generator that has not started yet.
    """
    __slots__ = ("kind", "index", "keep", "pushes", "value", "init_self")

    def __init__(self, kind: str, index: int, keep: int, pushes: int = 1, value: Any = None,
                 init_self: Any = NULL):
        self.kind = kind
        self.index = index          # index of the current instruction (Analysis.instructions)
        self.keep = keep            # stack items that stay below the resume point
        self.pushes = pushes        # values the instruction leaves ('result')
        self.value = value          # 'result' value when there is no inner frame
        self.init_self = init_self  # class call: the instance replaces __init__'s None


class FrameState:
    __slots__ = ("code", "where", "is_module", "globals", "locals", "cells", "stack", "tags",
                 "blocks", "resume", "handled", "inner", "inner_generator")

    def __init__(self, code: types.CodeType, where: str, is_module: bool, globals: dict,
                 locals: Dict[str, Any], cells: Dict[str, Any], stack: List[Any],
                 tags: Tuple[str, ...], blocks: List[Tuple[int, int, int]], resume: Resume,
                 handled: Optional[List[Any]] = None, inner: Optional[FrameState] = None,
                 inner_generator: Any = None):
        self.code = code
        self.where = where              # file:line, in function (for messages)
        self.is_module = is_module
        self.globals = globals
        self.locals = locals            # bound plain locals
        self.cells = cells              # cell objects of cell and free variables
        self.stack = stack              # pending values (NULL marks an empty slot)
        self.tags = tags                # per stack slot, see _stack_analysis
        self.blocks = blocks            # 3.9/3.10 open blocks
        self.resume = resume
        self.handled = handled if handled is not None else []   # exception per handler slot/block
        self.inner = inner
        # 'reexec': the generator object on this frame's stack that runs the inner frame
        self.inner_generator = inner_generator


def _read_variables(frame):
    """Slot layout, bound plain locals and cell objects of ``frame``."""
    kinds = _cpython.local_kinds(frame.f_code)
    raw = _cpython.read_slots(frame, 0, len(kinds))
    locals_, cells = {}, {}
    for (name, kind), value in zip(kinds, raw):
        if value is not NULL:
            (locals_ if kind == "local" else cells)[name] = value
    return kinds, locals_, cells


def _read_blocks(frame, analysis) -> list:
    if OPS.exception_model != "blocks" or not (analysis.opnames & OPS.block_setup_ops):
        # only SETUP_* instructions push blocks: code without them has none,
        # and reading the frame (ctypes) is not needed
        return []
    return _cpython.read_blocks(frame)


def _read_frame(frame, lasti: int):
    """Locals, cells and the static analysis of ``frame`` at ``lasti``."""
    code = frame.f_code
    kinds, locals_, cells = _read_variables(frame)
    try:
        analysis = analyze(code)
    except AnalysisError as e:
        raise TeleportError(f"{describe(frame)}: cannot analyse the bytecode of this frame ({e})") from None
    index = analysis.index_of(lasti)
    tags = analysis.tags_before.get(analysis.instructions[index].offset)
    if tags is None:
        raise TeleportError(f"{describe(frame)}: the current instruction is not reachable in the analysis")
    return kinds, locals_, cells, analysis, index, tags


def _pushes(ins) -> int:
    if ins.opname in OPS.push0_ops:
        return 0
    if ins.opname in OPS.push2_ops or (ins.opname in OPS.push2_if_lowbit and ins.arg & 1):
        return 2
    return 1


def _callable_on_stack(stack: list, below: int):
    first = stack[below] if below < len(stack) else NULL
    if first is NULL and below + 1 < len(stack):
        return stack[below + 1]
    return first


def _code_of(obj):
    """The code object a Python-level callable runs first, if any."""
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    if isinstance(obj, types.FunctionType):
        return obj.__code__
    call = getattr(type(obj), "__call__", None)
    if isinstance(call, types.FunctionType):
        return call.__code__
    return None


_GEN_DRIVERS = {id(next)}


def _first_argument(frame):
    code = frame.f_code
    if not code.co_argcount:
        return NULL
    return frame.f_locals.get(code.co_varnames[0], NULL)


def _link(outer, inner, outer_ins, stack_alive: bool, stack: list, below: int, inner_gen) -> str:
    """Decide how ``outer`` gets the value of ``inner``: 'result', 'reexec' or 'init'.

    Raises TeleportError when C code that cannot be resumed sits between them.
    """
    name = outer_ins.opname
    inner_code = inner.f_code
    if inner_code.co_flags & CO_GENERATOR:
        if name in OPS.gen_resume_ops:
            return "reexec"
        if name in OPS.call_ops and stack_alive:
            fn = _callable_on_stack(stack, below)
            if id(fn) in _GEN_DRIVERS or (
                    isinstance(fn, types.BuiltinMethodType) and fn.__self__ is inner_gen
                    and fn.__name__ in ("send", "__next__")):
                return "reexec"
            raise TeleportError(
                f"{describe(inner)}: this generator is being iterated by "
                f"{getattr(fn, '__qualname__', type(fn).__name__)}() (native code, called at "
                f"{describe(outer)}); native frames cannot be moved. Iterate it with a for loop "
                f"or next() instead")
        raise TeleportError(
            f"{describe(inner)}: this generator is driven by native code at {describe(outer)} "
            f"({name}); native frames cannot be moved")
    if name in OPS.call_ops:
        if not stack_alive:
            return "result"  # an inlined Python-to-Python call
        fn = _callable_on_stack(stack, below)
        if _first_argument(inner) is fn:
            # a bound method: during the call CPython overwrites the method's
            # stack slot with its self (vectorcall's PY_VECTORCALL_ARGUMENTS_OFFSET)
            return "result"
        if isinstance(fn, type):
            if inner_code.co_name == "__init__":
                return "init"
            if inner_code.co_name == "__call__":
                return "result"
            raise TeleportError(
                f"{describe(inner)}: called while constructing {fn.__qualname__} at "
                f"{describe(outer)}; only __init__ can be resumed inside a class call")
        if _code_of(fn) is inner_code:
            return "result"
        raise TeleportError(
            f"{describe(inner)}: called from native code "
            f"({getattr(fn, '__qualname__', repr(fn))}, called at {describe(outer)}); "
            f"native frames between Python frames cannot be moved")
    # implicit calls made by the interpreter: properties, descriptors, operators
    if name.startswith(("LOAD_ATTR", "STORE_ATTR", "DELETE_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR")) \
            or inner_code.co_name.startswith("__") and inner_code.co_name.endswith("__"):
        return "result"
    raise TeleportError(
        f"{describe(inner)}: called by the interpreter from {describe(outer)} ({name}) "
        f"through native code that cannot be resumed")


def _generator_of(frame, outer_stack: list):
    """The generator object running ``frame``, found on the caller's stack."""
    for value in reversed(outer_stack):
        if isinstance(value, types.GeneratorType) and value.gi_frame is frame:
            return value
    return None


def capture_frame(frame, *, inner=None, result=None, at_instruction=False) -> FrameState:
    """Snapshot one frame.  ``inner`` is the frame it is calling (None for the
    frame that called teleport, whose call returns ``result``).  With
    ``at_instruction`` the frame is about to execute its current instruction
    (an opcode trace event): it resumes by executing it, with the whole stack."""
    code = frame.f_code
    if code.co_flags & CO_ASYNC:
        raise TeleportError(f"{describe(frame)}: coroutines and async generators cannot be moved yet")
    kinds, locals_, cells, analysis, index, tags = _read_frame(frame, frame.f_lasti)
    ins = analysis.instructions[index]
    depth = len(tags)
    pushes = _pushes(ins)
    below = depth + stack_effect(ins, jump=False) - pushes   # items the instruction leaves alone
    link = _cpython.call_link(inner, frame) if inner is not None else "inline"
    stack_alive = link == "c"
    readable = depth if stack_alive or at_instruction else below
    if ins.opname in OPS.gen_send_ops and not at_instruction:
        readable = min(readable, depth - 1)   # the sent value was handed over
    stack = _cpython.read_slots(frame, len(kinds), readable)

    inner_gen = None
    if at_instruction:
        resume = Resume("reexec", index, depth)
    elif inner is None:
        resume = Resume("result", index, below, pushes, value=result)
    else:
        if inner.f_code.co_flags & CO_GENERATOR:
            inner_gen = _generator_of(inner, stack)
        how = "init" if link == "init" else _link(frame, inner, ins, stack_alive, stack, below, inner_gen)
        if how == "reexec":
            if inner_gen is None:
                raise TeleportError(f"{describe(inner)}: cannot find the generator object running this frame")
            resume = Resume("reexec", index, depth - 1 if ins.opname in OPS.gen_send_ops else depth)
        else:
            resume = Resume("result", index, below, pushes)
            if how == "init":
                resume.init_self = _first_argument(inner)
                if resume.init_self is NULL:
                    raise TeleportError(f"{describe(inner)}: __init__ without a self argument")
    if len(stack) < resume.keep:
        raise TeleportError(f"{describe(frame)}: internal error: stack shorter than expected "
                            f"({len(stack)} < {resume.keep})")
    return FrameState(
        code=code, where=describe(frame), is_module=_is_module_code(code), globals=frame.f_globals,
        locals=locals_, cells=cells, stack=stack[:resume.keep], tags=tags[:resume.keep],
        blocks=_read_blocks(frame, analysis), resume=resume, inner_generator=inner_gen if resume.kind == "reexec" else None,
    )


def capture_suspended(gen) -> FrameState:
    """Snapshot of a generator that is not running (created or suspended)."""
    import inspect   # only programs holding suspended generators pay for it
    frame = gen.gi_frame
    state = inspect.getgeneratorstate(gen)
    code = frame.f_code
    if state == inspect.GEN_CREATED:
        _, locals_, cells = _read_variables(frame)
        # 3.11+ (before MAKE_CELL ran) a cell-argument slot still holds the plain value
        for name in list(cells):
            if name in code.co_cellvars and not isinstance(cells[name], types.CellType):
                locals_[name] = cells.pop(name)
        return FrameState(code, describe(frame), False, frame.f_globals, locals_, cells,
                          [], (), [], Resume("start", 0, 0))
    kinds, locals_, cells, analysis, index, _ = _read_frame(frame, frame.f_lasti)
    if not OPS.suspended_lasti_at_yield:
        index -= 1  # f_lasti points after the yield: step back onto it
    # the instruction that yielded: YIELD_VALUE, or (3.9/3.10, suspended in
    # YIELD_FROM) the one after f_lasti; its last operand is the value it sent out
    at = index if analysis.instructions[index].opname == "YIELD_VALUE" else index + 1
    tags_at = analysis.tags_before[analysis.instructions[at].offset]
    keep = len(tags_at) - 1
    tags = tags_at[:keep]
    stack = _cpython.read_slots(frame, len(kinds), keep)
    blocks = _read_blocks(frame, analysis)
    return FrameState(code, describe(frame), False, frame.f_globals, locals_, cells,
                      stack, tags, blocks, Resume("yield", index, keep),
                      handled=[None] * _count_handlers(tags, blocks))


def _count_handlers(tags, blocks) -> int:
    return tags.count("prev_exc") + sum(1 for b in blocks if b[0] == EXCEPT_HANDLER_BLOCK)


def _is_module_code(code) -> bool:
    # not f_locals: on 3.12+ it is a fresh dict while an inlined comprehension runs
    return code.co_name == "<module>" and not code.co_flags & CO_OPTIMIZED


def _is_main_module_frame(frame) -> bool:
    main = sys.modules.get("__main__")
    return (_is_module_code(frame.f_code) and main is not None
            and frame.f_globals is getattr(main, "__dict__", None))


def _check_threads():
    threading = sys.modules.get("threading")
    if threading is None:
        return
    if threading.current_thread() is not threading.main_thread():
        raise TeleportError("teleport()/checkpoint() must be called from the main thread")
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    if others:
        names = ", ".join(repr(t.name) for t in others)
        raise TeleportError(
            f"other live threads: {names}; threads cannot be moved yet: join them before the call")


def capture_chain(start, result, at_instruction: bool = False) -> List[FrameState]:
    """Snapshot frames from ``start`` (the frame that called teleport) up to
    the ``__main__`` module frame; returns them outermost first, linked by
    ``.inner``.  ``result`` is what the call in ``start`` returns after the
    move; with ``at_instruction``, ``start`` is instead about to execute its
    current instruction and resumes there (see capture_frame)."""
    _check_threads()
    frames = []
    main_index = None
    f = start
    while f is not None:
        frames.append(f)
        # the outermost one: code exec()'d in __main__'s namespace looks the same
        if _is_main_module_frame(f):
            main_index = len(frames)
        f = f.f_back
    if main_index is None:
        raise TeleportError(
            f"{describe(start)}: no __main__ module frame above this call: pyteleport moves "
            "programs run as a script, with -m or -c (not code running at import time or "
            "inside an embedding application)")
    frames = frames[:main_index]
    states = []
    inner = None
    for frame in frames:   # innermost first
        state = capture_frame(frame, inner=inner, result=result,
                              at_instruction=at_instruction and inner is None)
        if states:
            state.inner = states[-1]
        states.append(state)
        inner = frame
    states.reverse()
    _assign_handled(states)
    return states


def _assign_handled(states: List[FrameState]):
    """Which exception each open handler is handling.

    A handler slot records the exception that was handled *before* it began;
    so handler k handles the exception recorded by handler k+1, and the last
    one handles the exception being handled at the call (sys.exc_info())."""
    slots = []   # (state, position) for every handler, outermost first
    for state in states:
        if OPS.exception_model == "table":
            slots += [(state, i) for i, t in enumerate(state.tags) if t == "prev_exc"]
        else:
            slots += [(state, b[2] + 1) for b in state.blocks if b[0] == EXCEPT_HANDLER_BLOCK]
    recorded = [s.stack[i] if i < len(s.stack) else None for s, i in slots]
    handled = recorded[1:] + [sys.exc_info()[1]]
    for state in states:
        state.handled = []
    for (state, _), exc in zip(slots, handled):
        state.handled.append(None if exc is NULL else exc)
