"""Everything pyteleport knows about particular CPython versions, in one place.

Each concern is one table keyed by ``(major, minor)``; the rest of the package
reads the entry for the running interpreter (``FACTS``) and never tests
``sys.version_info`` itself.  Offsets are for 64-bit builds (the only ones
supported) and were checked against the headers of each release:
``Include/cpython/frameobject.h`` (3.9, 3.10),
``Include/internal/pycore_frame.h`` (3.11-3.13) and
``Include/internal/pycore_interpframe_structs.h`` + ``pycore_stackref.h``
(3.14, 3.15), and verified by reading live frames.
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
                 owner_offset: "Optional[int]" = None, stackrefs: bool = False):
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
        # 3.14+: slots hold ``_PyStackRef``s (tagged pointers, see read_slots)
        self.stackrefs = stackrefs


# the owner of the shim frame a C-to-Python call starts with: FRAME_OWNED_BY_CSTACK
# on 3.12/3.13, FRAME_OWNED_BY_INTERPRETER on 3.14/3.15 (both 3; 3.14's CSTACK is 4
# and unused for that shim; an inlined class call's __init__ shim is owned by the
# thread, 0, on every version)
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
    # f_executable previous(8) f_funcobj f_globals f_builtins f_locals frame_obj
    # instr_ptr stackpointer(64) return_offset(72) owner(74) visited localsplus(80),
    # every slot a _PyStackRef (default build: no tlbc_index)
    (3, 14): FrameLayout(24, 80, previous_offset=8, owner_offset=74, stackrefs=True),
    (3, 15): FrameLayout(24, 80, previous_offset=8, owner_offset=74, stackrefs=True),
}

# _PyStackRef of the default (GIL) build, 3.14/3.15 (Include/internal/pycore_stackref.h):
# the two low bits are tags.  Py_TAG_REFCNT (1) marks a borrowed/deferred reference
# (the object is the pointer with the bit cleared); NULL is the bits 1 (0 in a slot
# never written); Py_INT_TAG (3) a tagged integer (value << 2), which the
# interpreter keeps on the stack for a handler's lasti and (3.15) a list or tuple
# iteration index.
STACKREF_TAG_BITS = 3
STACKREF_NULL_BITS = 1
STACKREF_INT_TAG = 3

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
    ``call_prefix_ops``    instructions that prepare the call right after them
                           (3.11 PRECALL, KW_NAMES): a call executed again starts
                           at the first of them (3.11: the analysed depth at
                           CALL leaves out its arguments, still on the stack)
    ``native_call_ops``    instructions whose specialised forms call a builtin
                           themselves (3.11's PRECALL: isinstance, len, str(),
                           list.append...): a Python frame started meanwhile
                           (``__instancecheck__``, ``__len__``) has C code between
    ``with_enter_ops``     instructions that call ``__enter__`` (SETUP_WITH, BEFORE_WITH)
    ``with_enter_slot``    what the manager's stack slot holds while ``__enter__``
                           runs: "exit" (already its bound ``__exit__``) or "manager"
    ``with_enter_pushes_block``  the with-instruction sets up its SETUP_FINALLY
                           block once ``__enter__`` has returned (3.9/3.10)
    ``iter_index_op``      (3.15) the instruction that pushes an iterable and the
                           index of its next item (a tagged int) for a ``for``
                           loop over a list, tuple, str or bytes; None before
    ``not_jumps``          instructions ``dis`` lists as jumps that never jump
                           (3.14+ END_ASYNC_FOR: its argument names the END_SEND
                           it comes from, for sys.monitoring's branch events)
    ``method_pair``        what a method load (LOAD_METHOD, LOAD_ATTR with the
                           low bit) leaves when the attribute is no method (a
                           property, a descriptor's ``__get__``, ``__getattr__``):
                           "null_first" (NULL, value) or "null_last" (value, NULL)
    """
    FIELDS = ("call_ops", "gen_resume_ops", "gen_send_ops", "push0_ops", "push2_ops",
              "push2_if_lowbit", "unconditional_jumps", "terminators", "exception_model",
              "block_handler_unit", "block_setup_ops", "jump_op", "call0", "header_ops", "suspended_lasti_at_yield",
              "suspended_yield", "call_prefix_ops", "native_call_ops", "with_enter_ops", "with_enter_slot",
              "with_enter_pushes_block", "iter_index_op", "not_jumps", "method_pair")

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
    call_prefix_ops=frozenset(),
    native_call_ops=frozenset(),
    with_enter_ops=frozenset({"SETUP_WITH"}),
    with_enter_slot="exit",
    with_enter_pushes_block=True,
    iter_index_op=None,
    not_jumps=frozenset(),
    method_pair="null_first",
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
    call_prefix_ops=frozenset({"PRECALL", "KW_NAMES"}),
    native_call_ops=frozenset({"PRECALL"}),
    with_enter_ops=frozenset({"BEFORE_WITH"}),
    with_enter_slot="exit",
    with_enter_pushes_block=False,
    iter_index_op=None,
    not_jumps=frozenset(),
    method_pair="null_first",
)
OPCODE_FACTS[(3, 12)] = OpcodeFacts(**{
    **OPCODE_FACTS[(3, 11)].__dict__,
    "push0_ops": frozenset({"STORE_ATTR", "STORE_SUBSCR", "DELETE_ATTR", "DELETE_SUBSCR", "STORE_SLICE"}),
    "push2_ops": frozenset(),
    "push2_if_lowbit": frozenset({"LOAD_ATTR", "LOAD_SUPER_ATTR"}),
    "terminators": _COMMON_TERMINATORS | {"RETURN_CONST"},
    "call0": ("PUSH_NULL", "LOAD_FN", "CALL"),
    "call_prefix_ops": frozenset({"KW_NAMES"}),
    "native_call_ops": frozenset(),
    # the generated BEFORE_WITH writes its outputs only once __enter__ returned
    "with_enter_slot": "manager",
})
OPCODE_FACTS[(3, 13)] = OpcodeFacts(**{
    **OPCODE_FACTS[(3, 12)].__dict__,
    "call_ops": frozenset({"CALL", "CALL_KW", "CALL_FUNCTION_EX"}),
    "call0": ("LOAD_FN", "PUSH_NULL", "CALL"),
    "suspended_lasti_at_yield": False,
    "call_prefix_ops": frozenset(),
    "method_pair": "null_last",
})
# 3.14: RETURN_CONST is gone (LOAD_CONST + RETURN_VALUE); new and specialised loads
# (LOAD_FAST_BORROW, LOAD_SMALL_INT, superinstructions) push one value each and
# BINARY_OP takes over subscripts: nothing else the tables name changes
OPCODE_FACTS[(3, 14)] = OpcodeFacts(**{
    **OPCODE_FACTS[(3, 13)].__dict__,
    "terminators": _COMMON_TERMINATORS,
    "not_jumps": frozenset({"END_ASYNC_FOR"}),
})
# 3.15: GET_ITER pushes the iterable and the index of its next item (list, tuple,
# str, bytes) or an iterator and NULL; LOAD_COMMON_CONSTANT loads None and friends
OPCODE_FACTS[(3, 15)] = OpcodeFacts(**{**OPCODE_FACTS[(3, 14)].__dict__, "iter_index_op": "GET_ITER"})



# Special methods the interpreter calls through C code on an instruction's
# own operands, returning the instruction's own result (``a + b`` ->
# ``a.__add__(b)``): a frame of one of them resumes by handing its return
# value to the instruction.  Any other special method called through C
# (``__eq__`` of a tuple's items during a tuple comparison, ``__hash__`` in a
# dict lookup, ``__bool__`` in a jump) is only part of what the instruction
# does, and cannot be resumed.  Opcode names of every version in one table
# (a name a version does not have never matches).
_OPERATORS = ("add", "sub", "mul", "matmul", "truediv", "floordiv", "mod", "pow",
              "lshift", "rshift", "and", "xor", "or")
_NUMERIC_METHODS = frozenset(f"__{side}{op}__" for op in _OPERATORS for side in ("", "r", "i"))
_SUBSCRIPT_METHODS = frozenset({"__getitem__", "__class_getitem__", "__missing__"})
_COMPARE_METHODS = frozenset({"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"})
_3_9_OPERATORS = ("ADD", "SUBTRACT", "MULTIPLY", "MATRIX_MULTIPLY", "TRUE_DIVIDE", "FLOOR_DIVIDE",
                  "MODULO", "POWER", "LSHIFT", "RSHIFT", "AND", "XOR", "OR")
RESULT_METHODS = {
    **{f"{kind}_{op}": _NUMERIC_METHODS for op in _3_9_OPERATORS for kind in ("BINARY", "INPLACE")},
    "BINARY_OP": _NUMERIC_METHODS | _SUBSCRIPT_METHODS,     # 3.14: subscripts are BINARY_OP
    "BINARY_SUBSCR": _SUBSCRIPT_METHODS,
    "BINARY_SLICE": _SUBSCRIPT_METHODS,
    "STORE_SUBSCR": frozenset({"__setitem__"}),
    "STORE_SLICE": frozenset({"__setitem__"}),
    "DELETE_SUBSCR": frozenset({"__delitem__"}),
    "COMPARE_OP": _COMPARE_METHODS,
    "CONTAINS_OP": frozenset({"__contains__"}),
    "UNARY_NEGATIVE": frozenset({"__neg__"}),
    "UNARY_POSITIVE": frozenset({"__pos__"}),
    "UNARY_INVERT": frozenset({"__invert__"}),
    "CALL_INTRINSIC_1": frozenset({"__pos__"}),             # 3.12+: unary plus
    "GET_ITER": frozenset({"__iter__"}),
    "GET_YIELD_FROM_ITER": frozenset({"__iter__"}),
    "FOR_ITER": frozenset({"__next__"}),
    "GET_LEN": frozenset({"__len__"}),
    "FORMAT_VALUE": frozenset({"__format__", "__str__", "__repr__"}),
    "FORMAT_SIMPLE": frozenset({"__format__", "__str__"}),
    "FORMAT_WITH_SPEC": frozenset({"__format__"}),
    "CONVERT_VALUE": frozenset({"__str__", "__repr__"}),
}
# the same, for a method of an object the stack does not hold as such (the
# context manager, or already its bound __exit__)
MANAGER_METHODS = {
    "SETUP_WITH": frozenset({"__enter__"}),
    "BEFORE_WITH": frozenset({"__enter__"}),
    "WITH_EXCEPT_START": frozenset({"__exit__"}),
}

# whether itertools objects pickle themselves (__reduce__/__setstate__); 3.14
# removed it (cpython gh-101588), see pyteleport/_payload/itertools_state.py
ITERTOOLS_PICKLE = {(3, 9): True, (3, 10): True, (3, 11): True, (3, 12): True, (3, 13): True,
                    (3, 14): False, (3, 15): False}
ITERTOOLS_PICKLABLE = ITERTOOLS_PICKLE.get(VERSION, True)


class UnsupportedPython(RuntimeError):
    pass


def _facts_for(version: "Tuple[int, int]"):
    try:
        return FRAME_LAYOUTS[version], OPCODE_FACTS[version]
    except KeyError:
        raise UnsupportedPython(
            f"pyteleport supports CPython 3.9 to 3.15; this is {version[0]}.{version[1]}"
        ) from None


LAYOUT, OPS = _facts_for(VERSION) if sys.implementation.name == "cpython" else (None, None)


def build_refusal(abiflags: str = getattr(sys, "abiflags", "")) -> "Optional[str]":
    """Why this interpreter build cannot be moved, or None.

    Free-threaded builds (``t`` in the ABI flags, ``Py_GIL_DISABLED``) lay
    frames and stack references out differently (``tlbc_index``, deferred
    reference counts) and are not supported yet."""
    if "t" in abiflags:
        return (f"free-threaded CPython builds (python{VERSION[0]}.{VERSION[1]}t) are not "
                f"supported yet; run the program with the default build (python{VERSION[0]}.{VERSION[1]})")
    return None


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
    stackrefs = LAYOUT.stackrefs
    for i in range(count):
        addr = ctypes.c_void_p.from_address(base + i * PTR).value
        if stackrefs and addr:
            if addr == STACKREF_NULL_BITS:
                addr = 0
            elif addr & STACKREF_TAG_BITS == STACKREF_INT_TAG:
                out.append(TaggedInt(addr >> 2))
                continue
            else:
                # a borrowed or deferred reference: the object is the untagged
                # pointer; py_object takes a new reference of its own
                addr &= ~STACKREF_TAG_BITS
        out.append(NULL if not addr else ctypes.cast(addr, ctypes.py_object).value)
    return out


class TaggedInt:
    """3.14+: a tagged integer found in a stack slot (not a Python object)."""
    __slots__ = ("value",)

    def __init__(self, value: int):
        self.value = value

    def __repr__(self):
        return f"<tagged int {self.value}>"


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
    ``"init"``   (3.13+) an inlined class call: a cleanup shim frame sits
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
