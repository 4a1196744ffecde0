"""Static analysis of a code object's value stack.

An executing frame does not record its stack depth on every version (3.9/3.10
never do while running; 3.11+ only after a Python-to-Python call), so the depth
at an instruction is derived from the code: a walk over the control-flow graph
applying ``dis.stack_effect``.  Each slot also gets a tag, so that the morph
compiler can tell which slots hold interpreter state rather than user values:

``"v"``        an ordinary value
``"prev_exc"`` (3.11+) the exception that was being handled before a handler
               started, pushed by PUSH_EXC_INFO
``"iter_index"`` (3.15) the index of a ``for`` loop over a sequence (a tagged
               int, above the sequence), pushed by GET_ITER

The analysis of a code object is kept in the on-disk cache
(:mod:`.compile_cache`): a move of code analysed by an earlier run does not
import ``dis``.
"""
from __future__ import annotations

from . import compile_cache
from .cpython import OPS, exception_table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple
    Tags = Tuple[str, ...]


class Ins:
    """What the snapshot and the compiler use of a ``dis.Instruction``.
    ``arg`` is None for an instruction without an argument; ``effect`` is its
    stack effect when it does not jump (None if dis has none for it)."""
    __slots__ = ("opname", "opcode", "arg", "offset", "effect")

    def __init__(self, opname: str, opcode: int, arg, offset: int, effect):
        self.opname = opname
        self.opcode = opcode
        self.arg = arg
        self.offset = offset
        self.effect = effect

    def __repr__(self):
        return f"<{self.opname} {self.arg} at {self.offset}>"


class Analysis:
    __slots__ = ("instructions", "tags_before", "_opnames")

    def __init__(self, instructions: Tuple[Ins, ...], tags_before: Dict[int, Tags]):
        self.instructions = instructions   # real instructions (no EXTENDED_ARG/CACHE)
        self.tags_before = tags_before     # offset -> tags of the stack before it
        self._opnames = None

    @property
    def opnames(self) -> frozenset:
        """The names of the instructions the code uses."""
        if self._opnames is None:
            self._opnames = frozenset(ins.opname for ins in self.instructions)
        return self._opnames

    def index_of(self, lasti: int) -> int:
        """Index of the instruction that contains byte offset ``lasti`` (a
        frame's f_lasti may point into the inline caches of its instruction)."""
        lo, hi = 0, len(self.instructions) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.instructions[mid].offset <= lasti:
                lo = mid
            else:
                hi = mid - 1
        return lo


class AnalysisError(RuntimeError):
    pass


def stack_effect(ins: Ins, jump: bool) -> int:
    if not jump and ins.effect is not None:
        return ins.effect    # known without loading dis's C half
    from _opcode import stack_effect as effect
    return effect(ins.opcode, ins.arg, jump=jump)


def _effect(opcode: int, arg) -> Optional[int]:
    from _opcode import stack_effect as effect
    try:
        return effect(opcode, arg, jump=False)
    except ValueError:
        return None


def _transfer(ins: Ins, tags: Tags, jump: bool) -> Tags:
    name = ins.opname
    if name == "PUSH_EXC_INFO":
        return tags[:-1] + ("prev_exc", "v")
    if name == "POP_EXCEPT" and OPS.exception_model == "table":
        return tags[:-1]
    if name == OPS.iter_index_op:
        return tags[:-1] + ("v", "iter_index")
    if name == "SWAP":
        lst = list(tags)
        lst[-1], lst[-ins.arg] = lst[-ins.arg], lst[-1]
        return tuple(lst)
    effect = stack_effect(ins, jump)
    if name == "RETURN_GENERATOR":
        # the generator is resumed with the sent value pushed (popped next)
        effect = 1
    if effect < 0:
        if -effect > len(tags):
            raise AnalysisError(f"stack underflow at {ins.offset} ({name})")
        return tags[:effect]
    return tags + ("v",) * effect


# by identity: code objects hash their constants, and a morph's constants
# (values of a frame moved before) may be unhashable; the entry keeps the
# code alive so that its id stays its own
_cache = {}
_CACHE_SIZE = 512


def analyze(code) -> Analysis:
    """Tags of the value stack before every reachable instruction of ``code``."""
    hit = _cache.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    if len(_cache) >= _CACHE_SIZE:
        _cache.clear()
    result = _from_cache(code)
    if result is None:
        result = _analyze(code)
        compile_cache.put("analysis", code, (), (
            tuple((i.opname, i.opcode, i.arg, i.offset, i.effect) for i in result.instructions),
            result.tags_before))
    _cache[id(code)] = (code, result)
    return result


def _from_cache(code):
    """The analysis an earlier run stored for ``code``, if well-formed."""
    entry = compile_cache.get("analysis", code)
    try:
        raw, tags_before = entry
        instructions = tuple(Ins(*fields) for fields in raw)
        last = -1
        for ins in instructions:
            if (type(ins.opname) is not str or type(ins.opcode) is not int
                    or not (ins.arg is None or type(ins.arg) is int)
                    or not (ins.effect is None or type(ins.effect) is int)
                    or type(ins.offset) is not int or ins.offset <= last):
                return None
            last = ins.offset
        if not instructions or type(tags_before) is not dict or not all(
                type(k) is int and type(v) is tuple and all(type(t) is str for t in v)
                for k, v in tags_before.items()):
            return None
    except (TypeError, ValueError):   # not a pair, not 4-tuples
        return None
    return Analysis(instructions, tags_before)


def _analyze(code) -> Analysis:
    import dis
    raw = [i for i in dis.get_instructions(code) if i.opname not in ("EXTENDED_ARG", "CACHE")]
    instrs = []
    for i in raw:
        arg = i.arg if i.opcode >= dis.HAVE_ARGUMENT else None
        instrs.append(Ins(i.opname, i.opcode, arg, i.offset, _effect(i.opcode, arg)))
    instrs = tuple(instrs)
    jumps = {i.offset: i.argval for i in raw if (i.opcode in dis.hasjrel or i.opcode in dis.hasjabs)
             and i.opname not in OPS.not_jumps}
    by_offset = {ins.offset: k for k, ins in enumerate(instrs)}
    ordered = sorted(by_offset)

    def resolve(offset: int) -> int:
        # a jump target may name an EXTENDED_ARG prefix: use the real instruction
        if offset in by_offset:
            return offset
        for o in ordered:
            if o >= offset:
                return o
        raise AnalysisError(f"jump to {offset} outside the code")

    table = exception_table(code) if OPS.exception_model == "table" else []
    tags_before = {}
    # 3.10's GEN_START pops the value a generator is first resumed with
    start_tags = ("v",) if instrs[0].opname == "GEN_START" else ()
    work = []
    seeded = set()

    def push(offset: int, tags: Tags):
        known = tags_before.get(offset)
        if known is None:
            tags_before[offset] = tags
            work.append((offset, tags))
        elif len(known) != len(tags):
            raise AnalysisError(
                f"{code.co_name}: inconsistent stack depth at offset {offset}: {len(known)} vs {len(tags)}")

    push(instrs[0].offset, start_tags)
    while work:
        offset, tags = work.pop()
        ins = instrs[by_offset[offset]]
        for k, (start, end, target, depth, lasti) in enumerate(table):
            if start <= offset < end and k not in seeded:
                seeded.add(k)
                push(resolve(target), tags[:depth] + ("v",) * (1 + bool(lasti)))
        name = ins.opname
        if offset in jumps:
            push(resolve(jumps[offset]), _transfer(ins, tags, jump=True))
            if name in OPS.unconditional_jumps:
                continue
        if name in OPS.terminators:
            continue
        k = by_offset[offset] + 1
        if k < len(instrs):
            push(instrs[k].offset, _transfer(ins, tags, jump=False))
    return Analysis(instrs, tags_before)
