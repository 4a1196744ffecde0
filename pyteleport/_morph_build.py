"""Building a morph template with the ``bytecode`` package: the frame's code
with the prologue that :func:`._morph._emit_prologue` describes in front.

Imported only when a template is neither in memory nor in the on-disk cache
(``bytecode`` and what it imports cost tens of milliseconds).
"""
from __future__ import annotations

from bytecode import Bytecode, CellVar, FreeVar, Instr, Label, TryBegin, TryEnd

from ._cpython import OPS, exception_table
from ._errors import TeleportError
from ._morph import PROLOGUE_HEADROOM, Template, ValueEmitter, _Slot, _emit_prologue
from ._stack_analysis import analyze

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Tuple
    from ._snapshot import FrameState


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
    em = CodeEmitter(lineno)

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
    return Template(bare, positions, freevars), em.values


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
