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

This module decides what the prologue holds (:func:`_emit_prologue`, written
against an emitter); :mod:`._morph_build` turns that into code with the
``bytecode`` package.  Templates are cached in memory and on disk
(:mod:`._template_cache`): a frame whose template an earlier run compiled only
has its values collected, and ``bytecode`` is never imported.
"""
from __future__ import annotations

import sys
import types

from ._cpython import EXCEPT_HANDLER_BLOCK, NULL, OPS, SETUP_FINALLY_BLOCK
from ._errors import TeleportError
from ._stack_analysis import analyze
from . import _rebuild, _template_cache
from ._rebuild import NullPair

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Tuple
    from ._snapshot import FrameState


class _Slot:
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


_templates: Dict[Any, Tuple[types.CodeType, Template]] = {}
PROLOGUE_HEADROOM = 8
TEMPLATE_CACHE_SIZE = 1024


class ValueEmitter:
    """Receives the prologue from :func:`_emit_prologue`.  This base class
    keeps only the values, which is all a known template needs;
    :class:`._morph_build.CodeEmitter` emits the instructions too."""

    def __init__(self, lineno=None):
        self.values: List[Any] = []
        self.lineno = lineno

    def op(self, name, arg=None):
        pass

    def const(self, value):
        self.op("LOAD_CONST", _Slot(len(self.values)))
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


def _shape(state: FrameState, inner_fn) -> tuple:
    """Everything the compiled code depends on besides the code and the values
    (plain strings, ints and bools: it is part of the on-disk cache key)."""
    r = state.resume
    stack_shape = tuple("N" if v is NULL else "" for v in state.stack)
    return (r.kind, r.index, r.keep, r.pushes, r.init_self is not NULL,
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


def _emit_prologue(state: FrameState, inner_fn, labels, em: ValueEmitter):
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
    shape = _shape(state, inner_fn)
    # the code by identity (its constants may be unhashable); the entry keeps
    # the code alive so that the id stays its own
    key = (id(state.code),) + shape
    hit = _templates.get(key)
    template = hit[1] if hit is not None and hit[0] is state.code else None
    values = None
    if template is None:
        template = _template_from_cache(state.code, shape)
        if template is not None:
            values = _values_only(state, inner_fn)
            if not _fits(template, values):
                template = None   # an entry that does not fit: compile afresh
        if template is None:
            from ._morph_build import build
            template, values = build(state, inner_fn)
            _template_cache.put("template", state.code, shape,
                                (template.bare, template.positions, template.freevars))
        if len(_templates) >= TEMPLATE_CACHE_SIZE:
            _templates.clear()
        _templates[key] = (state.code, template)
    if values is None:
        values = _values_only(state, inner_fn)
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


def _template_from_cache(code: types.CodeType, shape: tuple):
    """The template an earlier run compiled for ``code`` in ``shape``, if it
    is stored and well-formed."""
    entry = _template_cache.get("template", code, shape)
    if type(entry) is not tuple or len(entry) != 3:
        return None
    bare, positions, freevars = entry
    if (type(bare) is not types.CodeType or bare.co_name != code.co_name
            or type(positions) is not tuple or type(freevars) is not tuple
            or freevars != code.co_freevars + code.co_cellvars):
        return None
    n = len(bare.co_consts)
    for pair in positions:
        if (type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not int
                or type(pair[1]) is not int or not 0 <= pair[0] < n):
            return None
    return Template(bare, positions, freevars)


def _fits(template: Template, values: list) -> bool:
    """Whether a template read from disk takes exactly these values."""
    return sorted(vi for _, vi in template.positions) == list(range(len(values)))


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

    em = ValueEmitter()
    _emit_prologue(state, inner_fn, _AnyLabels(), em)
    return em.values
