"""Building a morph template with the ``bytecode`` package: the frame's code
with the prologue that :func:`.prologue.emit_prologue` describes in front.

Imported only when a template is neither in memory nor in the on-disk cache
(``bytecode`` and what it imports cost tens of milliseconds).
"""
from __future__ import annotations

from bytecode import Bytecode, CellVar, FreeVar, Instr, Label, TryBegin, TryEnd

from .cpython import OPS, exception_table
from .._errors import TeleportError
from .prologue import PROLOGUE_HEADROOM, Slot, Template, ValueEmitter, emit_prologue, merged_cells
from .stack_analysis import analyze

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple
    from .snapshot import FrameState


# instructions whose argument names a cell or free variable
_DEREF_OPS = frozenset({"LOAD_DEREF", "STORE_DEREF", "DELETE_DEREF", "LOAD_FROM_DICT_OR_DEREF"})
# instructions that read a slot as it is: given an argument that is also a
# cell (3.11+: one shared slot), they read the cell itself, which is how 3.13+
# compile LOAD_CLOSURE (building a closure)
_SLOT_LOAD_OPS = frozenset({"LOAD_FAST", "LOAD_FAST_BORROW", "LOAD_FAST_CHECK"})


class CodeEmitter(ValueEmitter):
    """Emits the prologue's instructions as well as its values."""

    def __init__(self, lineno):
        super().__init__(lineno)
        self.instrs: List[Any] = []

    def op(self, name, arg=None):
        if arg is None:
            self.instrs.append(Instr(name, lineno=self.lineno))
        else:
            self.instrs.append(Instr(name, arg, lineno=self.lineno))

    def new_label(self):
        return Label()

    def try_begin(self, target, push_lasti: bool, depth: int):
        entry = TryBegin(target, push_lasti, depth)
        self.instrs.append(entry)
        return entry

    def try_end(self, entry):
        self.instrs.append(TryEnd(entry))

    def label(self, label):
        self.instrs.append(label)


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


def build(state: FrameState, inner_fn) -> Tuple[Template, List[Any]]:
    code = state.code
    bc = _decode(code)
    labels = _Labels(bc, code)
    lineno = code.co_firstlineno
    target = labels.instrs[min(state.resume.index, len(labels.instrs) - 1)]
    if isinstance(target.lineno, int):
        lineno = target.lineno
    em = CodeEmitter(lineno)

    # cells become free variables so the old cell objects can be passed in;
    # the cells of inlined comprehensions (3.12+) stay cells, see merged_cells()
    merged = merged_cells(code)
    freevars = tuple(bc.freevars) + tuple(n for n in bc.cellvars if n not in merged)
    cell_arguments = (frozenset(bc.cellvars) & frozenset(code.co_varnames)) - frozenset(merged)
    kept = []
    header_end = 0
    # 3.15: a generator expression evaluates its iterable's GET_ITER before
    # RETURN_GENERATOR; the morph pushes those values itself (they are part of
    # the frame's stack), so only the header proper stays in front
    gen_at = _return_generator_at(bc)
    for k, x in enumerate(bc):
        if isinstance(x, Instr):
            if gen_at is not None and k < gen_at and x.name not in OPS.header_ops:
                continue
            if isinstance(x.arg, CellVar) and x.arg.name not in merged:
                if x.name == "MAKE_CELL":
                    continue
                x.arg = FreeVar(x.arg.name)
            elif x.name in _DEREF_OPS and isinstance(x.arg, str) and x.arg not in merged:
                # bytecode 0.19 on 3.14+ decodes the cell of an argument
                # (one shared slot) as the plain name
                x.arg = FreeVar(x.arg)
            elif x.name in _SLOT_LOAD_OPS and isinstance(x.arg, str) and x.arg in cell_arguments:
                # the morph keeps the argument's value in its plain slot and
                # the cell as a free variable: a closure must get the cell
                x.arg = FreeVar(x.arg)
            if x.name == "COPY_FREE_VARS":
                x.arg = len(freevars)
        kept.append(x)
    bc[:] = kept
    bc.freevars = list(freevars)
    bc.cellvars = list(merged)
    if OPS.header_ops:
        if freevars and not any(isinstance(x, Instr) and x.name == "COPY_FREE_VARS" for x in bc):
            bc.insert(0, Instr("COPY_FREE_VARS", len(freevars), lineno=lineno))
        header_end = _resume_end(bc)
    else:
        for k, x in enumerate(bc):
            if isinstance(x, Instr):
                if x.name == "GEN_START":
                    header_end = k + 1
                break
    first_body = next(x for x in bc[header_end:] if isinstance(x, Instr))
    labels.body_start = labels.instrs.index(first_body)

    emit_prologue(state, inner_fn, labels, em)
    labels.place()
    # the labels were placed among the original instructions; find the header end again
    if header_end:
        if OPS.header_ops:
            header_end = _resume_end(bc)
        else:
            for k, x in enumerate(bc):
                if isinstance(x, Instr) and x.name == "GEN_START":
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
    positions = tuple((ci, c.index) for ci, c in enumerate(new.co_consts) if isinstance(c, Slot))
    bare = new.replace(co_consts=tuple(None if isinstance(c, Slot) else c for c in new.co_consts))
    return Template(bare, positions, freevars), em.values


def _decode(code) -> Bytecode:
    """``code`` as ``bytecode`` instructions.

    A morph of a function whose argument is a cell has that name twice, as a
    plain local (the value) and a free variable (the cell); ``bytecode``
    cannot decode a slot load of such a free variable (3.13+ build closures
    with one), so the free variables are decoded under unique names first.
    """
    shadowed = frozenset(code.co_freevars) & frozenset(code.co_varnames)
    alias = {n: f"{n}\0free" for n in shadowed}
    decoded = code.replace(co_freevars=tuple(alias.get(n, n) for n in code.co_freevars)) if alias else code
    # 3.11+: keep the exception table's stack depths as the compiler wrote
    # them (recomputing them from the morph's control flow would be wrong:
    # the prologue enters the code in the middle)
    bc = (Bytecode.from_code(decoded, conserve_exception_block_stackdepth=True)
          if OPS.header_ops else Bytecode.from_code(decoded))
    if alias:
        original = {a: n for n, a in alias.items()}
        for x in bc:
            if isinstance(x, Instr) and isinstance(x.arg, FreeVar) and x.arg.name in original:
                x.arg = FreeVar(original[x.arg.name])
        bc.freevars = list(code.co_freevars)
    return bc


def _return_generator_at(bc) -> "Optional[int]":
    for k, x in enumerate(bc):
        if isinstance(x, Instr) and x.name == "RETURN_GENERATOR":
            return k
    return None


def _resume_end(bc) -> int:
    """3.11+: the position after the header's RESUME (in a generator, the one
    after RETURN_GENERATOR: a 3.15 generator expression has one before too)."""
    gen_at = _return_generator_at(bc)
    for k, x in enumerate(bc):
        if isinstance(x, Instr) and x.name == "RESUME" and (gen_at is None or k > gen_at):
            return k + 1
    return 0


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
