"""Everything pyteleport knows about particular CPython versions, in one place.

Each concern is one table keyed by ``(major, minor)``; the rest of the package
reads the entry for the running interpreter (``FACTS``) and never tests
``sys.version_info`` itself.  Offsets are for 64-bit builds (the only ones
supported) and were checked against the headers of each release:
``Include/cpython/frameobject.h`` (3.9, 3.10) and
``Include/internal/pycore_frame.h`` (3.11-3.13).
"""
from __future__ import annotations

import sys

# No dataclasses, typing or ctypes at import time: the snapshot of a simple
# program needs none of them, and each costs every move milliseconds (ctypes
# is imported on the first raw read of a frame, see _ctypes()).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple

VERSION: "Tuple[int, int]" = sys.version_info[:2]
PTR = 8 if sys.maxsize > 2**32 else 4


class FrameLayout:
    """Where a frame keeps its slots (locals, cells, free variables, value stack).

    3.9/3.10: the slots live inside the ``PyFrameObject`` at ``slots_offset``.
    3.11+: ``PyFrameObject.f_frame`` (at ``iframe_ptr_offset``) points at a
    ``_PyInterpreterFrame`` whose slots start at ``slots_offset``.
    """

    def __init__(self, iframe_ptr_offset: "Optional[int]", slots_offset: int, *,
                 iblock_offset: "Optional[int]" = None, blockstack_offset: "Optional[int]" = None,
                 previous_offset: "Optional[int]" = None, is_entry_offset: "Optional[int]" = None,
                 owner_offset: "Optional[int]" = None):
        self.iframe_ptr_offset = iframe_ptr_offset
        self.slots_offset = slots_offset
        # 3.9/3.10 block stack: offsets of ``f_iblock`` and ``f_blockstack``
        self.iblock_offset = iblock_offset
        self.blockstack_offset = blockstack_offset
        # 3.11+: offset of ``previous`` in the interpreter frame
        self.previous_offset = previous_offset
        # 3.11: offset of ``is_entry`` (a C call started this frame's eval loop)
        self.is_entry_offset = is_entry_offset
        # 3.12+: offset of ``owner``; FRAME_OWNED_BY_CSTACK marks a C-entry shim
        self.owner_offset = owner_offset


FRAME_OWNED_BY_CSTACK = 3

FRAME_LAYOUTS = {
    # PyObject_VAR_HEAD(24) f_back f_code f_builtins f_globals f_locals f_valuestack
    # f_stacktop f_trace (f_trace_lines f_trace_opcodes) f_gen f_lasti f_lineno
    # f_iblock(112) f_executing f_blockstack(120, 20 x 12 bytes) f_localsplus(360)
    (3, 9): FrameLayout(None, 360, iblock_offset=112, blockstack_offset=120),
    # as 3.9 without f_stacktop, with f_stackdepth; f_iblock(104) f_state
    # f_blockstack(112) f_localsplus(352)
    (3, 10): FrameLayout(None, 352, iblock_offset=104, blockstack_offset=112),
    # f_func f_globals f_builtins f_locals f_code frame_obj previous(48)
    # prev_instr stacktop(64) is_entry(68) owner localsplus(72)
    (3, 11): FrameLayout(24, 72, previous_offset=48, is_entry_offset=68),
    # f_code previous(8) f_funcobj f_globals f_builtins f_locals frame_obj
    # prev_instr stacktop return_offset owner(70) localsplus(72)
    (3, 12): FrameLayout(24, 72, previous_offset=8, owner_offset=70),
    # f_executable previous(8) ... instr_ptr stacktop return_offset owner(70) localsplus(72)
    (3, 13): FrameLayout(24, 72, previous_offset=8, owner_offset=70),
}

# signals every interpreter (3.9-3.13) sets to SIG_IGN at start-up
# (Python/pylifecycle.c, signal_install_handlers)
STARTUP_IGNORED_SIGNALS = ("SIGPIPE", "SIGXFSZ")

# 3.9/3.10 block types found on f_blockstack
SETUP_FINALLY_BLOCK = 122
EXCEPT_HANDLER_BLOCK = 257


class OpcodeFacts:
    """Bytecode facts the snapshot and the morph compiler depend on, one
    attribute per keyword of the constructor (all required):

    ``call_ops``           instructions that call a callable taken from the stack
    ``gen_resume_ops``     instructions that resume a generator held on the stack
    ``gen_send_ops``       among those, the ones that also pop a value to send
    ``push0_ops``, ``push2_ops``  instructions pushing no value / two values
                           (default is one)
    ``push2_if_lowbit``    instructions whose oparg low bit turns a 1-push into
                           a 2-push (method load)
    ``unconditional_jumps``, ``terminators``
    ``exception_model``    blocks live on the frame ("blocks", 3.9/3.10) or in
                           the exception table ("table", 3.11+)
    ``block_handler_unit`` unit of ``b_handler`` on the 3.9/3.10 block stack, in bytes
    ``block_setup_ops``    3.9/3.10: the instructions that push a block (a code
                           without any has an empty block stack)
    ``jump_op``            opcode used by the morph prologue to jump into the original code
    ``call0``              sequence that calls the TOS-loaded constant with no arguments
    ``header_ops``         header instructions that stay before the prologue (3.11+)
    ``suspended_lasti_at_yield``  a suspended generator's f_lasti points at its
                           YIELD_VALUE (False: after it)
    ``suspended_yield``    how a restored suspended generator reaches its yield:
                           "synthetic" yields from the prologue (block stack is
                           rebuilt first), "original" jumps to the original
                           YIELD_VALUE so the exception table covers it
    """
    FIELDS = ("call_ops", "gen_resume_ops", "gen_send_ops", "push0_ops", "push2_ops",
              "push2_if_lowbit", "unconditional_jumps", "terminators", "exception_model",
              "block_handler_unit", "block_setup_ops", "jump_op", "call0", "header_ops", "suspended_lasti_at_yield",
              "suspended_yield")

    def __init__(self, **facts):
        if set(facts) != set(self.FIELDS):
            raise TypeError(f"OpcodeFacts: expected exactly {self.FIELDS}, got {sorted(facts)}")
        self.__dict__.update(facts)


_COMMON_TERMINATORS = frozenset({"RETURN_VALUE", "RAISE_VARARGS", "RERAISE"})

OPCODE_FACTS = {}
OPCODE_FACTS[(3, 9)] = OpcodeFacts(
    call_ops=frozenset({"CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_FUNCTION_EX", "CALL_METHOD"}),
    gen_resume_ops=frozenset({"FOR_ITER", "YIELD_FROM"}),
    gen_send_ops=frozenset({"YIELD_FROM"}),
    push0_ops=frozenset({"STORE_ATTR", "STORE_SUBSCR", "DELETE_ATTR", "DELETE_SUBSCR"}),
    push2_ops=frozenset({"LOAD_METHOD"}),
    push2_if_lowbit=frozenset(),
    unconditional_jumps=frozenset({"JUMP_FORWARD", "JUMP_ABSOLUTE"}),
    terminators=_COMMON_TERMINATORS,
    exception_model="blocks",
    block_handler_unit=1,
    block_setup_ops=frozenset({"SETUP_FINALLY", "SETUP_WITH", "SETUP_ASYNC_WITH"}),
    jump_op="JUMP_ABSOLUTE",
    call0=("LOAD_FN", "CALL_FUNCTION"),
    header_ops=frozenset(),
    suspended_lasti_at_yield=True,
    suspended_yield="synthetic",
)
OPCODE_FACTS[(3, 10)] = OpcodeFacts(**{**OPCODE_FACTS[(3, 9)].__dict__, "block_handler_unit": 2})
OPCODE_FACTS[(3, 11)] = OpcodeFacts(
    call_ops=frozenset({"CALL", "CALL_FUNCTION_EX"}),
    gen_resume_ops=frozenset({"FOR_ITER", "SEND"}),
    gen_send_ops=frozenset({"SEND"}),
    push0_ops=frozenset({"STORE_ATTR", "STORE_SUBSCR", "DELETE_ATTR", "DELETE_SUBSCR"}),
    push2_ops=frozenset({"LOAD_METHOD"}),
    push2_if_lowbit=frozenset(),
    unconditional_jumps=frozenset({"JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT"}),
    terminators=_COMMON_TERMINATORS,
    exception_model="table",
    block_handler_unit=0,
    block_setup_ops=frozenset(),
    jump_op="JUMP_FORWARD",
    call0=("PUSH_NULL", "LOAD_FN", "PRECALL", "CALL"),
    header_ops=frozenset({"COPY_FREE_VARS", "MAKE_CELL", "RETURN_GENERATOR", "POP_TOP", "RESUME"}),
    suspended_lasti_at_yield=True,
    suspended_yield="original",
)
OPCODE_FACTS[(3, 12)] = OpcodeFacts(**{
    **OPCODE_FACTS[(3, 11)].__dict__,
    "push0_ops": frozenset({"STORE_ATTR", "STORE_SUBSCR", "DELETE_ATTR", "DELETE_SUBSCR", "STORE_SLICE"}),
    "push2_ops": frozenset(),
    "push2_if_lowbit": frozenset({"LOAD_ATTR", "LOAD_SUPER_ATTR"}),
    "terminators": _COMMON_TERMINATORS | {"RETURN_CONST"},
    "call0": ("PUSH_NULL", "LOAD_FN", "CALL"),
})
OPCODE_FACTS[(3, 13)] = OpcodeFacts(**{
    **OPCODE_FACTS[(3, 12)].__dict__,
    "call_ops": frozenset({"CALL", "CALL_KW", "CALL_FUNCTION_EX"}),
    "call0": ("LOAD_FN", "PUSH_NULL", "CALL"),
    "suspended_lasti_at_yield": False,
})


class UnsupportedPython(RuntimeError):
    pass


def _facts_for(version: "Tuple[int, int]"):
    try:
        return FRAME_LAYOUTS[version], OPCODE_FACTS[version]
    except KeyError:
        raise UnsupportedPython(
            f"pyteleport supports CPython 3.9 to 3.13; this is {version[0]}.{version[1]}"
        ) from None


LAYOUT, OPS = _facts_for(VERSION) if sys.implementation.name == "cpython" else (None, None)


# --- raw frame access -------------------------------------------------------

def _ctypes():
    import ctypes   # on first use: a snapshot that reads no raw slot never needs it
    return ctypes

def _slots_base(frame) -> int:
    """Address of the first slot (local 0) of a frame."""
    if LAYOUT.iframe_ptr_offset is None:
        return id(frame) + LAYOUT.slots_offset
    return _iframe(frame) + LAYOUT.slots_offset


def _iframe(frame) -> int:
    return _ctypes().c_void_p.from_address(id(frame) + LAYOUT.iframe_ptr_offset).value


NULL = object()  # marks an empty (NULL) slot when reading raw slots


def read_slots(frame, start: int, count: int) -> list:
    """Read ``count`` raw slots of ``frame`` starting at ``start``.

    Empty slots come back as :data:`NULL`; other slots as new references.
    """
    if count <= 0:
        return []
    ctypes = _ctypes()
    base = _slots_base(frame) + start * PTR
    out = []
    for i in range(count):
        addr = ctypes.c_void_p.from_address(base + i * PTR).value
        out.append(NULL if not addr else ctypes.cast(addr, ctypes.py_object).value)
    return out


def read_blocks(frame) -> list:
    """3.9/3.10: the frame's block stack as ``(type, handler offset, level)``."""
    ctypes = _ctypes()
    n = ctypes.c_int.from_address(id(frame) + LAYOUT.iblock_offset).value
    blocks = []
    for i in range(n):
        b_type, b_handler, b_level = (ctypes.c_int * 3).from_address(
            id(frame) + LAYOUT.blockstack_offset + 12 * i)
        if b_handler >= 0:
            b_handler *= OPS.block_handler_unit
        blocks.append((b_type, b_handler, b_level))
    return blocks


def call_link(inner, outer) -> str:
    """How ``outer`` started ``inner``'s execution.

    ``"c"``      through C code: ``outer``'s call arguments are still alive on
                 its stack (always the case on 3.9/3.10);
    ``"inline"`` an inlined Python-to-Python call (3.11+): the arguments were
                 moved into ``inner`` and must not be read;
    ``"init"``   (3.13) an inlined class call: a cleanup shim frame sits
                 between, and the call's value is the new instance.
    """
    if LAYOUT.iframe_ptr_offset is None:
        return "c"
    ctypes = _ctypes()
    inner_if = _iframe(inner)
    if LAYOUT.is_entry_offset is not None:
        return "c" if ctypes.c_bool.from_address(inner_if + LAYOUT.is_entry_offset).value else "inline"
    previous = ctypes.c_void_p.from_address(inner_if + LAYOUT.previous_offset).value
    if previous == _iframe(outer):
        return "inline"
    owner = ctypes.c_char.from_address(previous + LAYOUT.owner_offset).value[0]
    return "c" if owner == FRAME_OWNED_BY_CSTACK else "init"


def local_kinds(code) -> "Tuple[Tuple[str, str], ...]":
    """Slot order of ``code`` as ``(name, kind)`` with kind in local/cell/free.

    3.9/3.10 keep a plain-local slot for every varname, then one per cell, then
    one per free variable.  3.11+ merge an argument that is also a cell into one
    slot (which then holds the cell).
    """
    cells = set(code.co_cellvars)
    if LAYOUT.iframe_ptr_offset is None:
        return (tuple((n, "local") for n in code.co_varnames)
                + tuple((n, "cell") for n in code.co_cellvars)
                + tuple((n, "free") for n in code.co_freevars))
    return (tuple((n, "cell" if n in cells else "local") for n in code.co_varnames)
            + tuple((n, "cell") for n in code.co_cellvars if n not in code.co_varnames)
            + tuple((n, "free") for n in code.co_freevars))


def exception_table(code) -> list:
    """3.11+: entries ``(start, end, target, depth, lasti)`` in byte offsets."""
    import dis
    return [(e.start, e.end, e.target, e.depth, e.lasti) for e in dis._parse_exception_table(code)]
