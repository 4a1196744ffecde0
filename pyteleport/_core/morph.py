"""The morph compiler: turns a :class:`~.snapshot.FrameState` into code that
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

What the prologue holds is decided in :mod:`.prologue` (written against an
emitter); :mod:`.morph_build` turns that into code with the ``bytecode``
package.  Templates are cached in memory and on disk
(:mod:`.compile_cache`): a frame whose template an earlier run compiled only
has its values collected, and ``bytecode`` is never imported.
"""
from __future__ import annotations

import sys
import types

from .._payload import rebuild
from . import compile_cache
from .cpython import NULL
from .prologue import Template, ValueEmitter, emit_prologue, full_handlers, merged_cells
from .stack_analysis import analyze

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Tuple
    from .snapshot import FrameState


_templates: Dict[Any, Tuple[types.CodeType, Template]] = {}
TEMPLATE_CACHE_SIZE = 1024


def _shape(state: FrameState, inner_fn) -> tuple:
    """Everything the compiled code depends on besides the code and the values
    (plain strings, ints and bools: it is part of the on-disk cache key)."""
    r = state.resume
    stack_shape = tuple("N" if v is NULL else "" for v in state.stack)
    return (r.kind, r.index, r.keep, r.pushes, r.init_self is not NULL,
            inner_fn is not None, tuple(sorted(state.locals)), tuple(sorted(state.cells)),
            stack_shape, state.tags, tuple(state.blocks), full_handlers(state))


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
            from .morph_build import build
            template, values = build(state, inner_fn)
            compile_cache.put("template", state.code, shape,
                                (template.bare, template.positions, template.freevars))
        if len(_templates) >= TEMPLATE_CACHE_SIZE:
            _templates.clear()
        _templates[key] = (state.code, template)
    if values is None:
        values = _values_only(state, inner_fn)
    fills = tuple((ci, values[vi]) for ci, vi in template.positions)
    if state.is_module:
        recipe = (rebuild.fill_code, (template.bare, fills))
    else:
        closure = tuple(state.cells.get(name) or types.CellType() for name in template.freevars)
        recipe = (rebuild.morph_function,
                  (template.bare, fills, _module_name_of(state.globals) or state.globals, closure or None))
    morph = recipe[0](*recipe[1])
    if recipes is not None:
        recipes[id(morph)] = recipe
    return morph


def _template_from_cache(code: types.CodeType, shape: tuple):
    """The template an earlier run compiled for ``code`` in ``shape``, if it
    is stored and well-formed."""
    entry = compile_cache.get("template", code, shape)
    if type(entry) is not tuple or len(entry) != 3:
        return None
    bare, positions, freevars = entry
    if (type(bare) is not types.CodeType or bare.co_name != code.co_name
            or type(positions) is not tuple or type(freevars) is not tuple
            or freevars != code.co_freevars + tuple(
                n for n in code.co_cellvars if n not in merged_cells(code))):
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
    emit_prologue(state, inner_fn, _AnyLabels(), em)
    return em.values
