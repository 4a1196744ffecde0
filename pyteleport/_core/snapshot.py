"""Snapshot of a running program: the chain of Python frames from a call site
up to the ``__main__`` module frame, each with its locals, cells, pending stack
values and (3.9/3.10) open blocks, plus how each frame is to resume.

Nothing here serialises or compiles anything; :mod:`.morph` turns a
:class:`FrameState` into code and :mod:`pyteleport._payload.pickler` turns objects into bytes.
"""
from __future__ import annotations

import sys
import types
from opcode import opmap

from . import cpython
from .cpython import NULL, OPS, EXCEPT_HANDLER_BLOCK, TaggedInt
from .._errors import TeleportError
from .._payload import rebuild
from .._threads.policy import check_threads
from .stack_analysis import AnalysisError, analyze, stack_effect

_EXTENDED_ARG = opmap["EXTENDED_ARG"]

# no inspect, dataclasses or typing here: they cost every move milliseconds
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

# inspect.CO_* (the same on every CPython)
CO_OPTIMIZED = 0x0001
CO_GENERATOR = 0x0020
CO_COROUTINE = 0x0080
CO_ASYNC_GENERATOR = 0x0200
# frames run by a generator or a coroutine object: they suspend and resume alike
CO_SUSPENDABLE = CO_GENERATOR | CO_COROUTINE
SUSPENDABLE_TYPES = (types.GeneratorType, types.CoroutineType)


def frame_of(obj):
    """The frame of a generator or coroutine (None once it has finished)."""
    return obj.gi_frame if type(obj) is types.GeneratorType else obj.cr_frame


def suspendable_state(obj) -> str:
    """"created", "suspended", "running" or "closed", for a generator or a coroutine."""
    import inspect   # only programs holding suspended generators pay for it
    state = (inspect.getgeneratorstate(obj) if type(obj) is types.GeneratorType
             else inspect.getcoroutinestate(obj))
    return state.split("_", 1)[1].lower()


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
        self.tags = tags                # per stack slot, see stack_analysis.py
        self.blocks = blocks            # 3.9/3.10 open blocks
        self.resume = resume
        self.handled = handled if handled is not None else []   # exception per handler slot/block
        self.inner = inner
        # 'reexec': the generator object on this frame's stack that runs the inner frame
        self.inner_generator = inner_generator


def _read_variables(frame):
    """Slot layout, bound plain locals and cell objects of ``frame``."""
    kinds = cpython.local_kinds(frame.f_code)
    raw = cpython.read_slots(frame, 0, len(kinds))
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
    return cpython.read_blocks(frame)


def _read_frame(frame, lasti: int):
    """Locals, cells and the static analysis of ``frame`` at ``lasti``."""
    code = frame.f_code
    kinds, locals_, cells = _read_variables(frame)
    try:
        analysis = analyze(code)
    except AnalysisError as e:
        raise TeleportError(f"{describe(frame)}: cannot analyse the bytecode of this frame ({e})") from None
    index = analysis.index_of(_past_prefixes(code, lasti))
    tags = analysis.tags_before.get(analysis.instructions[index].offset)
    if tags is None:
        raise TeleportError(f"{describe(frame)}: the current instruction is not reachable in the analysis")
    return kinds, locals_, cells, analysis, index, tags


def _past_prefixes(code, lasti: int) -> int:
    """The offset of the instruction an EXTENDED_ARG at ``lasti`` prefixes
    (3.15 reports an opcode event there, before the instruction runs; the
    analysis, without prefixes, would take it for the one before)."""
    raw = code.co_code
    while 0 <= lasti < len(raw) - 2 and raw[lasti] == _EXTENDED_ARG:
        lasti += 2
    return lasti


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
# called with the generator as first argument: type(g).send(g, x), or
# g.send(x) compiled as a method call (LOAD_METHOD, LOAD_ATTR with the method bit)
_GEN_METHODS = {id(types.GeneratorType.send): "send", id(types.GeneratorType.throw): "throw",
                id(types.GeneratorType.__next__): "__next__",
                id(types.CoroutineType.send): "send", id(types.CoroutineType.throw): "throw"}
_GEN_METHOD_NAMES = ("send", "throw", "__next__")


def _driver_call(fn, inner_gen) -> str:
    """What ``fn`` does to ``inner_gen`` when a frame calls it: "next"
    (next(), __next__: executing the call again starts the restored
    generator), "send" (send(), throw(): the value or exception was delivered
    already, so the call is executed again as send(None)), or "" (not a driver)."""
    if id(fn) in _GEN_DRIVERS:
        return "next"
    name = _GEN_METHODS.get(id(fn))
    if name is None and isinstance(fn, types.BuiltinMethodType) and fn.__self__ is inner_gen:
        name = fn.__name__ if fn.__name__ in _GEN_METHOD_NAMES else None
    if name is None:
        return ""
    return "next" if name == "__next__" else "send"


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
    if inner_code.co_flags & CO_SUSPENDABLE:
        if name in OPS.gen_resume_ops:
            return "reexec"
        fn = _callable_on_stack(stack, below) if name in OPS.call_ops and stack_alive else None
        if fn is not None and _driver_call(fn, inner_gen):
            return "reexec"
        if inner_code.co_flags & CO_COROUTINE:
            raise TeleportError(
                f"{describe(inner)}: this coroutine is run by "
                f"{_native_name(fn) if fn is not None else name} (native code, at {describe(outer)}): "
                f"coroutines run by an asyncio event loop cannot be moved yet; ones driven by "
                f"send() or await from Python code can")
        if fn is not None:
            raise TeleportError(
                f"{describe(inner)}: this generator is being iterated by {_native_name(fn)} "
                f"(native code, called at {describe(outer)}); native frames cannot be moved. "
                f"Iterate it with a for loop or next() instead")
        raise TeleportError(
            f"{describe(inner)}: this generator is driven by native code at {describe(outer)} "
            f"({name}); native frames cannot be moved")
    if name in OPS.native_call_ops:
        raise TeleportError(
            f"{describe(inner)}: called from native code (a builtin called at {describe(outer)}); "
            f"native frames between Python frames cannot be moved")
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
    if name.startswith(("LOAD_ATTR", "STORE_ATTR", "DELETE_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR")):
        return "result"
    if not stack_alive:
        return "result"     # 3.11+ inlines only calls whose result is the instruction's
    if inner_code.co_name in cpython.MANAGER_METHODS.get(name, ()):
        return "result"
    if inner_code.co_name in cpython.RESULT_METHODS.get(name, ()):
        self = _first_argument(inner)
        if any(self is operand for operand in stack[below:]):
            return "result"
    raise TeleportError(
        f"{describe(inner)}: called by the interpreter from {describe(outer)} ({name}) "
        f"through native code that cannot be resumed")


def _native_name(fn) -> str:
    return f"{getattr(fn, '__qualname__', type(fn).__name__)}()"


def _generator_of(frame, outer_stack: list):
    """The generator or coroutine object running ``frame``, found on the
    caller's stack (itself, or the object of a bound method such as ``g.send``)."""
    for value in reversed(outer_stack):
        if isinstance(value, types.BuiltinMethodType):
            value = value.__self__
        if isinstance(value, SUSPENDABLE_TYPES) and frame_of(value) is frame:
            return value
    return None


def _call_start(analysis, index: int) -> int:
    """The first instruction of the call sequence ending at ``index`` (3.11:
    PRECALL, KW_NAMES), where a call executed again must start."""
    instructions = analysis.instructions
    if instructions[index].opname not in OPS.call_ops | OPS.call_prefix_ops:
        return index
    while index and instructions[index - 1].opname in OPS.call_prefix_ops:
        index -= 1
    return index


def _past_header(analysis, index: int) -> int:
    """Where a frame stopped in its generator header (3.10's GEN_START,
    3.11+'s POP_TOP and RESUME after RETURN_GENERATOR: a generator being
    started, its first sent value not popped yet) resumes: at the body's
    first instruction, with the empty stack it has there.  The morph
    runs the header itself before its prologue, so a jump back into the
    header would run the prologue again, forever."""
    instructions = analysis.instructions
    if not OPS.header_ops:
        return 1 if index == 0 and instructions[0].opname == "GEN_START" else index
    generator_at = next((k for k, ins in enumerate(instructions) if ins.opname == "RETURN_GENERATOR"), None)
    if generator_at is None or index < generator_at:
        return index
    for k in range(generator_at + 1, len(instructions)):
        if instructions[k].opname not in OPS.header_ops:
            return index
        if instructions[k].opname == "RESUME":
            return k + 1 if index <= k else index
    return index


def _enter_with(frame, analysis, ins, stack: list, blocks: list) -> None:
    """The frame calls ``__enter__`` in a with-instruction, which resumes as
    'result': what the instruction does once ``__enter__`` has returned is
    done here, so that the prologue rebuilds it (the bound ``__exit__`` in the
    manager's slot; 3.9/3.10 the with-block, set up below the result)."""
    if OPS.with_enter_slot == "manager":
        manager = stack[-1]
        exit_ = getattr(type(manager), "__exit__", None)
        if exit_ is None or not hasattr(exit_, "__get__"):
            raise TeleportError(f"{describe(frame)}: the context manager has no __exit__")
        stack[-1] = exit_.__get__(manager, type(manager))
    if OPS.with_enter_pushes_block:
        blocks.append((cpython.SETUP_FINALLY_BLOCK, _jump_target(analysis, ins), len(stack)))


def _jump_target(analysis, ins) -> int:
    """Byte offset an instruction with a relative jump argument jumps to."""
    following = analysis.instructions[analysis.instructions.index(ins) + 1].offset
    return following + ins.arg * OPS.block_handler_unit


def capture_frame(frame, *, inner=None, result=None, at_instruction=False) -> FrameState:
    """Snapshot one frame.  ``inner`` is the frame it is calling (None for the
    frame that called teleport, whose call returns ``result``).  With
    ``at_instruction`` the frame is about to execute its current instruction
    (an opcode trace event): it resumes by executing it, with the whole stack."""
    code = frame.f_code
    if code.co_flags & CO_ASYNC_GENERATOR:
        raise TeleportError(f"{describe(frame)}: async generators cannot be moved yet")
    kinds, locals_, cells, analysis, index, tags = _read_frame(frame, frame.f_lasti)
    ins = analysis.instructions[index]
    if ins.opname in OPS.native_call_ops and inner is not None and inner.f_code.co_flags & CO_SUSPENDABLE:
        # 3.11: a specialised PRECALL made the call itself (g.send(x) in a warm
        # loop): the same call as the CALL after it, which it skips
        while analysis.instructions[index].opname not in OPS.call_ops:
            index += 1
        ins = analysis.instructions[index]
        tags = analysis.tags_before[ins.offset]
    depth = len(tags)
    pushes = _pushes(ins)
    below = depth + stack_effect(ins, jump=False) - pushes   # items the instruction leaves alone
    link = cpython.call_link(inner, frame) if inner is not None else "inline"
    stack_alive = link == "c"
    # a call executed again (reexec) starts at its first instruction, with the
    # whole stack there (3.11: the arguments above the depth analysed at CALL)
    start = _call_start(analysis, index)
    if at_instruction:
        start = _past_header(analysis, start)
    start_tags = analysis.tags_before[analysis.instructions[start].offset] if start != index else tags
    readable = len(start_tags) if stack_alive or at_instruction else below
    if ins.opname in OPS.gen_send_ops and not at_instruction:
        readable = min(readable, depth - 1)   # the sent value was handed over
    stack = _untag(cpython.read_slots(frame, len(kinds), readable), start_tags, frame)
    blocks = _read_blocks(frame, analysis)

    inner_gen = None
    if at_instruction:
        resume = Resume("reexec", start, len(start_tags))
        tags = start_tags
    elif inner is None:
        resume = Resume("result", index, below, pushes, value=result)
    else:
        if inner.f_code.co_flags & CO_SUSPENDABLE:
            inner_gen = _generator_of(inner, stack)
        how = "init" if link == "init" else _link(frame, inner, ins, stack_alive, stack, below, inner_gen)
        if how == "reexec":
            if inner_gen is None:
                raise TeleportError(f"{describe(inner)}: cannot find the generator object running this frame")
            if ins.opname in OPS.gen_send_ops:
                resume = Resume("reexec", index, depth - 1)
            else:
                resume = Resume("reexec", start, len(start_tags))
                tags = start_tags
                if ins.opname in OPS.call_ops:
                    _resume_driver_call(stack, below, inner_gen)
        else:
            resume = Resume("result", index, below, pushes)
            if how == "init":
                resume.init_self = _first_argument(inner)
                if resume.init_self is NULL:
                    raise TeleportError(f"{describe(inner)}: __init__ without a self argument")
            elif ins.opname in OPS.with_enter_ops:
                stack = stack[:below]
                _enter_with(frame, analysis, ins, stack, blocks)
    if len(stack) < resume.keep:
        raise TeleportError(f"{describe(frame)}: internal error: stack shorter than expected "
                            f"({len(stack)} < {resume.keep})")
    return FrameState(
        code=code, where=describe(frame), is_module=_is_module_code(code), globals=frame.f_globals,
        locals=locals_, cells=cells, stack=stack[:resume.keep], tags=tags[:resume.keep],
        blocks=blocks, resume=resume, inner_generator=inner_gen if resume.kind == "reexec" else None,
    )


def _resume_driver_call(stack: list, below: int, inner_gen) -> None:
    """A call of send() or throw() on the generator is executed again as
    send(None): the restored generator, not started yet, is sent its
    first value (the frame itself holds what the original call delivered)."""
    at = below if stack[below] is not NULL or below + 1 >= len(stack) else below + 1
    if _driver_call(stack[at], inner_gen) == "send":
        stack[at] = rebuild.SendNone(inner_gen)


def capture_suspended(gen) -> FrameState:
    """Snapshot of a generator or coroutine that is not running (created or suspended)."""
    frame = frame_of(gen)
    code = frame.f_code
    if suspendable_state(gen) == "created":
        kinds, locals_, cells = _read_variables(frame)
        # 3.11+ (before MAKE_CELL ran) a cell-argument slot still holds the plain value
        for name in list(cells):
            if name in code.co_cellvars and not isinstance(cells[name], types.CellType):
                locals_[name] = cells.pop(name)
        tags = _created_stack_tags(code) if OPS.iter_index_op else ()
        stack = _untag(cpython.read_slots(frame, len(kinds), len(tags)), tags, frame)
        return FrameState(code, describe(frame), False, frame.f_globals, locals_, cells,
                          stack, tags, [], Resume("start", 0, len(tags)))
    kinds, locals_, cells, analysis, index, _ = _read_frame(frame, frame.f_lasti)
    if not OPS.suspended_lasti_at_yield:
        index -= 1  # f_lasti points after the yield: step back onto it
    # the instruction that yielded: YIELD_VALUE, or (3.9/3.10, suspended in
    # YIELD_FROM) the one after f_lasti; its last operand is the value it sent out
    at = index if analysis.instructions[index].opname == "YIELD_VALUE" else index + 1
    tags_at = analysis.tags_before[analysis.instructions[at].offset]
    keep = len(tags_at) - 1
    tags = tags_at[:keep]
    stack = _untag(cpython.read_slots(frame, len(kinds), keep), tags, frame)
    blocks = _read_blocks(frame, analysis)
    return FrameState(code, describe(frame), False, frame.f_globals, locals_, cells,
                      stack, tags, blocks, Resume("yield", index, keep),
                      handled=[None] * _count_handlers(tags, blocks))


def _created_stack_tags(code) -> tuple:
    """The stack of a generator that has not started: empty, but for a 3.15
    generator expression, whose iterable (and index) are pushed before
    RETURN_GENERATOR."""
    analysis = analyze(code)
    after_return = False
    for ins in analysis.instructions:
        if ins.opname == "RETURN_GENERATOR":
            after_return = True
        elif after_return and ins.opname == "RESUME":
            return analysis.tags_before.get(ins.offset, ())
    return ()


def _untag(stack: list, tags, frame) -> list:
    """3.14+: replace the tagged integers of a stack (not Python objects).

    A ``for`` loop over a list, tuple, str or bytes (3.15) keeps the sequence
    and the index of its next item: they become an iterator at that index and
    NULL, which FOR_ITER treats as any iterator.  Any other tagged int (the
    lasti of an exception cleanup) cannot be rebuilt by a morph."""
    for k, value in enumerate(stack):
        if type(value) is not TaggedInt:
            continue
        if k == 0 or tags[k] != "iter_index":
            raise TeleportError(
                f"{describe(frame)}: an exception cleanup is running here (a with block's "
                f"__exit__ called because of an exception); the interpreter's "
                f"position inside it cannot be moved: move before or after it")
        it = iter(stack[k - 1])
        try:
            it.__setstate__(value.value)
        except (AttributeError, TypeError):
            for _ in range(value.value):
                next(it)
        stack[k - 1], stack[k] = it, NULL
    return stack


def _count_handlers(tags, blocks) -> int:
    return tags.count("prev_exc") + sum(1 for b in blocks if b[0] == EXCEPT_HANDLER_BLOCK)


def _is_module_code(code) -> bool:
    # not f_locals: on 3.12+ it is a fresh dict while an inlined comprehension runs
    return code.co_name == "<module>" and not code.co_flags & CO_OPTIMIZED


def _is_main_module_frame(frame) -> bool:
    main = sys.modules.get("__main__")
    return (_is_module_code(frame.f_code) and main is not None
            and frame.f_globals is getattr(main, "__dict__", None))


def _typed_at_a_prompt(filename: str) -> bool:
    """Code typed at the interactive prompt (python -i, python with no script, 3.13+ REPL)."""
    return filename.startswith(("<stdin", "<python-input-"))   # <stdin>, 3.13 <stdin>-1, 3.14 <stdin-1>


def capture_chain(start, result, at_instruction: bool = False, outermost=None) -> List[FrameState]:
    """Snapshot frames from ``start`` (the frame that called teleport) up to
    the ``__main__`` module frame; returns them outermost first, linked by
    ``.inner``.  ``result`` is what the call in ``start`` returns after the
    move; with ``at_instruction``, ``start`` is instead about to execute its
    current instruction and resumes there (see capture_frame).  ``outermost``:
    the frame to stop at (a notebook cell's; the process stays, so its other
    threads do too)."""
    refusal = cpython.build_refusal()
    if refusal is not None:
        raise TeleportError(refusal)
    if outermost is None:
        check_threads()
    frames = []
    main_index = None
    f = start
    while f is not None:
        frames.append(f)
        # the outermost one: code exec()'d in __main__'s namespace looks the same
        if _is_main_module_frame(f):
            main_index = len(frames)
        if f is outermost:
            break
        f = f.f_back
    if main_index is None:
        raise TeleportError(
            f"{describe(start)}: no __main__ module frame above this call: pyteleport moves "
            "programs run as a script, with -m or -c (not code running at import time or "
            "inside an embedding application)")
    frames = frames[:main_index]
    if _typed_at_a_prompt(frames[-1].f_code.co_filename):
        raise TeleportError(
            f"{describe(frames[-1])}: code typed at the interactive prompt cannot move (the "
            "prompt, its input and history stay in this terminal): run it as a script, or in "
            "a notebook cell, where teleport() moves the cell and brings its results back")
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
