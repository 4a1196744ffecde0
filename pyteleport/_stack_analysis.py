"""Static analysis of a code object's value stack.

An executing frame does not record its stack depth on every version (3.9/3.10
never do while running; 3.11+ only after a Python-to-Python call), so the depth
at an instruction is derived from the code: a walk over the control-flow graph
applying ``dis.stack_effect``.  Each slot also gets a tag, so that the morph
compiler can tell which slots hold interpreter state rather than user values:

``"v"``        an ordinary value
``"prev_exc"`` (3.11+) the exception that was being handled before a handler
               started, pushed by PUSH_EXC_INFO
"""
from __future__ import annotations

import dis

from ._cpython import OPS, exception_table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Tuple
    Tags = Tuple[str, ...]


class Analysis:
    __slots__ = ("instructions", "tags_before")

    def __init__(self, instructions: "Tuple[dis.Instruction, ...]", tags_before: "Dict[int, Tags]"):
        self.instructions = instructions   # real instructions (no EXTENDED_ARG/CACHE)
        self.tags_before = tags_before     # offset -> tags of the stack before it

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


def stack_effect(ins: dis.Instruction, jump: bool) -> int:
    arg = ins.arg if ins.opcode >= dis.HAVE_ARGUMENT else None
    return dis.stack_effect(ins.opcode, arg, jump=jump)


def _transfer(ins: dis.Instruction, tags: Tags, jump: bool) -> Tags:
    name = ins.opname
    if name == "PUSH_EXC_INFO":
        return tags[:-1] + ("prev_exc", "v")
    if name == "POP_EXCEPT" and OPS.exception_model == "table":
        return tags[:-1]
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
    result = _analyze(code)
    _cache[id(code)] = (code, result)
    return result


def _analyze(code) -> Analysis:
    instrs = tuple(i for i in dis.get_instructions(code)
                   if i.opname not in ("EXTENDED_ARG", "CACHE"))
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
        is_jump = ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs
        if is_jump:
            push(resolve(ins.argval), _transfer(ins, tags, jump=True))
            if name in OPS.unconditional_jumps:
                continue
        if name in OPS.terminators:
            continue
        k = by_offset[offset] + 1
        if k < len(instrs):
            push(instrs[k].offset, _transfer(ins, tags, jump=False))
    return Analysis(instrs, tags_before)
