"""The morph's prologue: what rebuilds a frame before its own code goes on.

:func:`emit_prologue` writes the prologue of one frame against an emitter:
a :class:`ValueEmitter` collects only the values (all a known template
needs), :class:`.morph_build.CodeEmitter` also the instructions.  Shared by
the compiler (:mod:`.morph_build`) and the template cache of :mod:`.morph`.
"""
from __future__ import annotations

import types

from .._errors import TeleportError
from .._payload.rebuild import NullPair
from .cpython import EXCEPT_HANDLER_BLOCK, NULL, OPS, SETUP_FINALLY_BLOCK
from .stack_analysis import analyze

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Tuple
    from .snapshot import FrameState

class Slot:
    """Placeholder constant, replaced by the ``index``-th value of a frame."""
    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __repr__(self):
        return f"<slot {self.index}>"


class Template:
    """A compiled morph without its values: ``bare`` holds None where each
    ``(const index, value index)`` of ``positions`` puts a frame's value."""
    __slots__ = ("bare", "positions", "freevars")

    def __init__(self, bare: types.CodeType, positions: Tuple[Tuple[int, int], ...],
                 freevars: Tuple[str, ...]):
        self.bare = bare
        self.positions = positions
        self.freevars = freevars


# stack slots the prologue may need beyond the frame's own code
PROLOGUE_HEADROOM = 8


class ValueEmitter:
    """Receives the prologue from :func:`emit_prologue`.  This base class
    keeps only the values, which is all a known template needs;
    :class:`.morph_build.CodeEmitter` emits the instructions too."""

    def __init__(self, lineno=None):
        self.values: List[Any] = []
        self.lineno = lineno

    def op(self, name, arg=None):
        pass

    def const(self, value):
        self.op("LOAD_CONST", Slot(len(self.values)))
        self.values.append(value)

    def call0(self, fn):
        for name in OPS.call0:
            if name == "LOAD_FN":
                self.const(fn)
            else:
                self.op(name, 0 if name in ("CALL", "PRECALL", "CALL_FUNCTION") else None)

    def new_label(self):
        return None

    def try_begin(self, target, push_lasti: bool, depth: int):
        return None

    def try_end(self, entry):
        pass

    def label(self, label):
        pass

    def push_null_pair(self, value):
        """3.9/3.10 have no PUSH_NULL: LOAD_METHOD of a plain instance
        attribute pushes exactly (NULL, value)."""
        self.const(NullPair(value))
        self.op("LOAD_METHOD", "v")


def full_handlers(state: FrameState) -> tuple:
    """3.9/3.10: for each EXCEPT_HANDLER block, whether the six values pushed
    when the handler began are all still on the stack (a finally clause, or an
    except clause before it bound the exception)."""
    out = []
    for b_type, _, level in state.blocks:
        if b_type == EXCEPT_HANDLER_BLOCK:
            s = state.stack
            out.append(level + 5 < len(s) and isinstance(s[level + 4], BaseException)
                       and isinstance(s[level + 5], type))
    return tuple(out)


def merged_cells(code) -> tuple:
    """Cell variables that share their slot with a plain local and are not
    arguments: the variables of a comprehension inlined into ``code`` that a
    closure captures (3.12+).  The comprehension saves the slot with
    LOAD_FAST_AND_CLEAR, makes a new cell there (MAKE_CELL) and puts the saved
    value back with STORE_FAST, so the morph keeps them as cells (they cannot
    become free variables) and stores the frame's cell objects into their
    slots with STORE_FAST."""
    if not code.co_cellvars:
        return ()
    plain = code.co_varnames[_nargs(code):]
    return tuple(n for n in code.co_cellvars if n in plain)


def emit_prologue(state: FrameState, inner_fn, labels, em: ValueEmitter):
    code = state.code
    for name in merged_cells(code):
        if name in state.cells:
            em.const(state.cells[name])   # the very cell object (shared with closures)
            em.op("STORE_FAST", name)
    # locals; an argument that is also a cell keeps its value in the plain slot too
    # (zero-argument super() reads argument 0 from it)
    for name, value in state.locals.items():
        em.const(value)
        em.op("STORE_FAST", name)
    for name in code.co_varnames[:_nargs(code)]:
        if name in state.cells and name not in state.locals and name in code.co_cellvars:
            cell = state.cells[name]
            try:
                em.const(cell.cell_contents)
            except ValueError:
                continue
            em.op("STORE_FAST", name)
        elif name not in state.locals and name not in state.cells:
            em.op("DELETE_FAST", name)

    blocks = list(state.blocks)
    full = list(full_handlers(state))
    handled = list(state.handled)
    stack, tags = state.stack, state.tags
    i = 0
    while True:
        while blocks and blocks[0][2] == i:
            b_type, handler, _ = blocks.pop(0)
            if b_type == SETUP_FINALLY_BLOCK:
                em.op("SETUP_FINALLY", labels.at_offset(handler))
            elif b_type == EXCEPT_HANDLER_BLOCK:
                # re-enter the handler the way the interpreter does: raise the
                # handled exception into a block that lands here
                landing = em.new_label()
                em.op("SETUP_FINALLY", landing)
                em.const(handled.pop(0))
                em.op("RAISE_VARARGS", 1)
                em.label(landing)
                if full.pop(0):
                    i += 6
                else:
                    for _ in range(3):
                        em.op("POP_TOP")
                    i += 3
            else:
                raise TeleportError(f"{state.where}: unsupported block type {b_type}")
        if i >= len(stack):
            break
        value, tag = stack[i], tags[i]
        if tag == "prev_exc":
            # re-enter the handler the way the interpreter does: raise the
            # handled exception (which gives it a traceback) and catch it
            landing = em.new_label()
            entry = em.try_begin(landing, False, i)
            em.const(handled.pop(0))
            em.op("RAISE_VARARGS", 1)
            em.try_end(entry)
            em.label(landing)
            em.op("PUSH_EXC_INFO")
            em.op("POP_TOP")
            i += 1
        elif value is NULL:
            if OPS.exception_model == "blocks":
                em.push_null_pair(stack[i + 1])
                i += 2
            else:
                em.op("PUSH_NULL")
                i += 1
        else:
            em.const(value)
            i += 1

    r = state.resume
    if r.kind == "result":
        if inner_fn is not None:
            # exceptions from the inner frame must reach this frame's handlers:
            # the call runs under the exception-table entry of the original call
            covering = labels.covering_entry(r.index)
            entry = em.try_begin(*covering) if covering else None
            em.call0(inner_fn)
            if entry is not None:
                em.try_end(entry)
            if r.init_self is not NULL:
                em.op("POP_TOP")
                em.const(r.init_self)
        else:
            em.const(r.value)
        if r.pushes == 0:
            em.op("POP_TOP")
        elif r.pushes == 2:
            _method_pair(em)
        em.op(OPS.jump_op, labels.at_index(r.index + 1))
    elif r.kind == "reexec":
        if r.keep < len(analyze(code).tags_before[labels.offset_of(r.index)]):
            em.const(None)   # SEND/YIELD_FROM: what a just-started generator must be sent
        em.op(OPS.jump_op, labels.at_index(r.index))
    elif r.kind == "yield":
        em.const(None)
        if OPS.suspended_yield == "synthetic":
            # blocks are set up already, so throw() and close() reach them
            em.op("YIELD_VALUE")
            em.op(OPS.jump_op, labels.at_index(r.index + 1))
        else:
            em.op(OPS.jump_op, labels.at_index(r.index))
    elif r.kind == "start":
        em.op(OPS.jump_op, labels.at_index(labels.body_start))
    else:
        raise AssertionError(r.kind)


def _method_pair(em) -> None:
    """The value of a method load that called Python code (a property, a
    descriptor, ``__getattr__``) is on the stack: leave what the load leaves
    for an attribute that is no method, the value and a NULL in the order of
    this version (the call that follows takes the value as the callable)."""
    if OPS.method_pair == "null_last":
        em.op("PUSH_NULL")
    elif OPS.exception_model == "table":      # 3.11/3.12
        em.op("PUSH_NULL")
        em.op("SWAP", 2)
    else:     # 3.9/3.10: no PUSH_NULL; a holder's plain attribute loaded as a method
        holder = NullPair(None)
        em.const(holder)
        em.op("STORE_ATTR", "v")
        em.const(holder)
        em.op("LOAD_METHOD", "v")


def _nargs(code) -> int:
    n = code.co_argcount + code.co_kwonlyargcount
    return n + bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)
