"""The morph compiler: turns a :class:`~._snapshot.FrameState` into code that
rebuilds the frame and continues the original code where it stopped.

A morph is the frame's own code object with a prologue in front:

1. (3.11+) the original header (COPY_FREE_VARS, RETURN_GENERATOR, RESUME);
2. stores of every bound local;
3. the pending stack values pushed in order, interleaved on 3.9/3.10 with the
   SETUP_FINALLY blocks that were open, with the handled exception re-entered
   where a handler was running;
4. the resume action: push the value of the instruction that was executing
   (or call the next morph inward, which rebuilds the next frame), then jump
   into the original code right after it.

The frame's cell variables become free variables of the morph, so the very
cell objects of the old frame (shared with closures) are passed back in
through ``__closure__``.  Compilation is cached per code position: values are
placeholder constants filled in per frame with ``code.replace(co_consts=...)``,
so a 300-deep recursion of one function compiles once.
"""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

from bytecode import Bytecode, CellVar, FreeVar, Instr, Label, TryBegin, TryEnd

from ._cpython import EXCEPT_HANDLER_BLOCK, NULL, OPS, SETUP_FINALLY_BLOCK, exception_table
from ._errors import TeleportError
from ._snapshot import FrameState
from ._stack_analysis import analyze
from . import _rebuild
from ._rebuild import NullPair


class _Slot:
    """Placeholder constant, replaced by the ``index``-th value of a frame."""
    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __repr__(self):
        return f"<slot {self.index}>"


@dataclass
class _Template:
    bare: types.CodeType                      # placeholders replaced by None
    positions: Tuple[Tuple[int, int], ...]   # (const index, value index)
    freevars: Tuple[str, ...]


_templates: Dict[Any, Tuple[types.CodeType, _Template]] = {}
PROLOGUE_HEADROOM = 8
TEMPLATE_CACHE_SIZE = 1024


class _Emitter:
    def __init__(self, lineno):
        self.instrs: List[Any] = []
        self.values: List[Any] = []
        self.lineno = lineno

    def op(self, name, arg=None):
        if arg is None:
            self.instrs.append(Instr(name, lineno=self.lineno))
        else:
            self.instrs.append(Instr(name, arg, lineno=self.lineno))

    def const(self, value):
        self.op("LOAD_CONST", _Slot(len(self.values)))
        self.values.append(value)

    def call0(self, fn):
        for name in OPS.call0:
            if name == "LOAD_FN":
                self.const(fn)
            else:
                self.op(name, 0 if name in ("CALL", "PRECALL", "CALL_FUNCTION") else None)

    def try_begin(self, target, push_lasti: bool, depth: int):
        entry = TryBegin(target, push_lasti, depth)
        self.instrs.append(entry)
        return entry

    def try_end(self, entry):
        self.instrs.append(TryEnd(entry))

    def label(self, label):
        self.instrs.append(label)

    def push_null_pair(self, value):
        """3.9/3.10 have no PUSH_NULL: LOAD_METHOD of a plain instance
        attribute pushes exactly (NULL, value)."""
        self.const(NullPair(value))
        self.op("LOAD_METHOD", "v")


def _shape(state: FrameState, inner_fn) -> tuple:
    """Everything the compiled code depends on besides the values."""
    r = state.resume
    stack_shape = tuple("N" if v is NULL else "" for v in state.stack)
    # the code by identity (its constants may be unhashable); the template
    # cache keeps the code alive so that the id stays its own
    return (id(state.code), r.kind, r.index, r.keep, r.pushes, r.init_self is not NULL,
            inner_fn is not None, tuple(sorted(state.locals)), tuple(sorted(state.cells)),
            stack_shape, state.tags, tuple(state.blocks), _full_handlers(state))


def _full_handlers(state: FrameState) -> tuple:
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


def _emit_prologue(state: FrameState, inner_fn, labels, em: _Emitter):
    code = state.code
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
    full = list(_full_handlers(state))
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
                landing = Label()
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
            landing = Label()
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
            raise TeleportError(f"{state.where}: resuming inside a method lookup is not supported yet")
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


def _nargs(code) -> int:
    n = code.co_argcount + code.co_kwonlyargcount
    return n + bool(code.co_flags & 0x04) + bool(code.co_flags & 0x08)


class _Labels:
    """Labels at original instructions, created on demand."""

    def __init__(self, bc: Bytecode, code):
        self.bc = bc
        self.analysis = analyze(code)
        self.instrs = [x for x in bc if isinstance(x, Instr)]
        if len(self.instrs) != len(self.analysis.instructions) or any(
                a.name != b.opname for a, b in zip(self.instrs, self.analysis.instructions)):
            raise TeleportError(f"{code.co_filename}: {code.co_name}: bytecode and dis disagree "
                                "on the instructions of this code (unsupported bytecode version?)")
        self.offsets = {ins.offset: k for k, ins in enumerate(self.analysis.instructions)}
        self.made: Dict[int, Label] = {}
        self.body_start = 0
        self.table = exception_table(code) if OPS.exception_model == "table" else []

    def offset_of(self, index: int) -> int:
        return self.analysis.instructions[index].offset

    def covering_entry(self, index: int):
        """3.11+: (handler label, push_lasti, depth) of the exception-table
        entry covering instruction ``index``, or None."""
        offset = self.offset_of(index)
        for start, end, target, depth, lasti in self.table:
            if start <= offset < end:
                return self.at_offset(target), bool(lasti), depth
        return None

    def at_index(self, index: int) -> Label:
        if index not in self.made:
            self.made[index] = Label()
        return self.made[index]

    def at_offset(self, offset: int) -> Label:
        return self.at_index(self.offsets[offset])

    def place(self):
        """Insert the labels that were asked for before their instructions."""
        out = []
        by_id = {id(ins): k for k, ins in enumerate(self.instrs)}
        for x in self.bc:
            k = by_id.get(id(x)) if isinstance(x, Instr) else None
            if k is not None and k in self.made:
                out.append(self.made[k])
            out.append(x)
        self.bc[:] = out


def _build(state: FrameState, inner_fn) -> Tuple[_Template, List[Any]]:
    code = state.code
    # 3.11+: keep the exception table's stack depths as the compiler wrote
    # them (recomputing them from the morph's control flow would be wrong:
    # the prologue enters the code in the middle)
    bc = (Bytecode.from_code(code, conserve_exception_block_stackdepth=True)
          if OPS.header_ops else Bytecode.from_code(code))
    labels = _Labels(bc, code)
    lineno = code.co_firstlineno
    target = labels.instrs[min(state.resume.index, len(labels.instrs) - 1)]
    if isinstance(target.lineno, int):
        lineno = target.lineno
    em = _Emitter(lineno)

    # cells become free variables so the old cell objects can be passed in
    freevars = tuple(bc.freevars) + tuple(bc.cellvars)
    kept = []
    header_end = 0
    for k, x in enumerate(bc):
        if isinstance(x, Instr):
            if x.name == "MAKE_CELL":
                continue
            if isinstance(x.arg, CellVar):
                x.arg = FreeVar(x.arg.name)
            if x.name == "COPY_FREE_VARS":
                x.arg = len(freevars)
        kept.append(x)
    bc[:] = kept
    bc.freevars = list(freevars)
    bc.cellvars = []
    if OPS.header_ops:
        if freevars and not any(isinstance(x, Instr) and x.name == "COPY_FREE_VARS" for x in bc):
            bc.insert(0, Instr("COPY_FREE_VARS", len(freevars), lineno=lineno))
        for k, x in enumerate(bc):
            if isinstance(x, Instr) and x.name == "RESUME":
                header_end = k + 1
                break
    else:
        for k, x in enumerate(bc):
            if isinstance(x, Instr):
                if x.name == "GEN_START":
                    header_end = k + 1
                break
    first_body = next(x for x in bc[header_end:] if isinstance(x, Instr))
    labels.body_start = labels.instrs.index(first_body)

    _emit_prologue(state, inner_fn, labels, em)
    labels.place()
    # the labels were placed among the original instructions; find the header end again
    if header_end:
        for k, x in enumerate(bc):
            if isinstance(x, Instr) and x.name in ("RESUME", "GEN_START"):
                header_end = k + 1
                break
    bc[header_end:header_end] = _outside_open_region(bc, header_end, em.instrs)
    # The stack size is not recomputed: analysing from the morph's entry would
    # miss what the original's exception handlers need.  The prologue never
    # holds more than the original stack at the resume point plus a few
    # temporaries (a call's NULL and callable, a handler's six values).
    stacksize = code.co_stacksize + PROLOGUE_HEADROOM
    try:
        new = bc.to_code(stacksize=stacksize, compute_exception_stack_depths=False)
    except Exception as e:  # a bug here must not look like the user's fault
        raise TeleportError(f"{state.where}: internal error while compiling the resume code: "
                            f"{type(e).__name__}: {e}") from e
    positions = tuple((ci, c.index) for ci, c in enumerate(new.co_consts) if isinstance(c, _Slot))
    bare = new.replace(co_consts=tuple(None if isinstance(c, _Slot) else c for c in new.co_consts))
    return _Template(bare, positions, freevars), em.values


def _outside_open_region(bc: Bytecode, position: int, prologue: list) -> list:
    """Keep the prologue out of a try region open at ``position`` (3.12+
    generators run their whole body in one); regions cannot nest, and the
    prologue opens its own.  The region is closed before the prologue and a
    copy of it reopened after; the original's end now closes the copy."""
    open_entry = None
    for x in bc[:position]:
        if isinstance(x, TryBegin):
            open_entry = x
        elif isinstance(x, TryEnd) and x.entry is open_entry:
            open_entry = None
    if open_entry is None:
        return prologue
    copy = TryBegin(open_entry.target, open_entry.push_lasti, open_entry.stack_depth)
    for x in bc[position:]:
        if isinstance(x, TryEnd) and x.entry is open_entry:
            x.entry = copy
    return [TryEnd(open_entry)] + prologue + [copy]


def _module_name_of(namespace: dict):
    name = namespace.get("__name__")
    module = sys.modules.get(name) if isinstance(name, str) else None
    return name if module is not None and getattr(module, "__dict__", None) is namespace else None


def compile_state(state: FrameState, inner_fn=None, recipes: Dict[int, tuple] = None):
    """The morph of one frame: a code object for the module frame, otherwise a
    function that takes no arguments.

    ``recipes`` (by ``id`` of the morph) records how it was made from its
    template, so the pickler sends the template once and each frame's values.
    """
    key = _shape(state, inner_fn)
    hit = _templates.get(key)
    if hit is not None and hit[0] is state.code:
        template = hit[1]
        values = _values_only(state, inner_fn)
    else:
        template, values = _build(state, inner_fn)
        if len(_templates) >= TEMPLATE_CACHE_SIZE:
            _templates.clear()
        _templates[key] = (state.code, template)
    fills = tuple((ci, values[vi]) for ci, vi in template.positions)
    if state.is_module:
        recipe = (_rebuild.fill_code, (template.bare, fills))
    else:
        closure = tuple(state.cells.get(name) or types.CellType() for name in template.freevars)
        recipe = (_rebuild.morph_function,
                  (template.bare, fills, _module_name_of(state.globals) or state.globals, closure or None))
    morph = recipe[0](*recipe[1])
    if recipes is not None:
        recipes[id(morph)] = recipe
    return morph


class _ValueCollector(_Emitter):
    """An emitter that only records values (the template is known)."""

    def op(self, name, arg=None):
        pass

    def try_begin(self, target, push_lasti, depth):
        return None

    def try_end(self, entry):
        pass

    def label(self, label):
        pass


def _values_only(state: FrameState, inner_fn) -> List[Any]:
    class _AnyLabels:
        body_start = 0

        def at_index(self, index):
            return None

        def at_offset(self, offset):
            return None

        def offset_of(self, index):
            return analyze(state.code).instructions[index].offset

        def covering_entry(self, index):
            return None

    em = _ValueCollector(0)
    _emit_prologue(state, inner_fn, _AnyLabels(), em)
    return em.values
