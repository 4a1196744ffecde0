"""Packing a running program into a :class:`~._payload.Payload`:
snapshot the frames, compile their morphs, serialise everything.

Any failure here is a :class:`TeleportError` raised before anything is sent.
"""
from __future__ import annotations

import os
import sys
import time

from .. import _log
from . import morph as _morph
from .._payload import pickler as _pickler
from .._payload.cpickle import dumps as pickle_dumps   # pickle.py costs milliseconds of imports
from .cpython import NULL, STARTUP_IGNORED_SIGNALS
from .._errors import TeleportError
from .._payload.container import Payload
from .snapshot import FrameState, capture_chain, capture_suspended
from .._state import modules as _state_modules, pickling as _state_pickling, registry as _state_registry

TYPE_CHECKING = False   # typing costs a move milliseconds: annotations only
if TYPE_CHECKING:
    from typing import Any, Dict, List, Tuple

# never carried by value: the interpreter and the import system set them up
_MAIN_SKIP = {"__builtins__", "__loader__", "__spec__"}


def pack(frame, result: Any, extra_context: Dict[str, Any] = None,
         at_instruction: bool = False, cell=None) -> Payload:
    """Everything needed to continue the program at ``frame``'s current call,
    which returns ``result`` in the resumed process (with ``at_instruction``:
    at the instruction ``frame`` is about to execute, see interrupt.py).
    ``cell``: a notebook cell's move (pyteleport._notebook.kernel.CellMove),
    which stops at the cell's frame and carries the namespace it chose."""
    started = time.perf_counter()
    states = capture_chain(frame, result, at_instruction, cell.outer if cell is not None else None)
    running = {}
    recipes = {}
    chain = _compile_chain(states, running, recipes)
    main = sys.modules["__main__"]
    if cell is not None:
        main_globals = cell.namespace()
    else:
        main_globals = {k: v for k, v in vars(main).items() if k not in _MAIN_SKIP}
        if "IPython" in sys.modules:    # `ipython script.py`: the shell's own names stay
            from .._notebook.kernel import without_shell_names
            main_globals = without_shell_names(main_globals)
    class_recipes = {}
    modules, library_attrs = _state_modules.module_attrs(class_recipes, [s.locals for s in states])
    module_state = _state_registry.collect()
    # innermost first: each morph refers to the next one inward, so pickling
    # them in this order keeps the pickler's recursion shallow however deep
    # the stack is
    signals = _signal_handlers()
    # __main__'s globals first: rebuilding any object may read them
    root = {"main_first": _pickler.main_globals_first(main_globals),
            "chain": chain, "main": main_globals, "modules": modules, "signals": signals,
            "state": [(name, restore, value) for name, restore, value, _ in module_state]}
    _state_pickling.begin(class_recipes)
    try:
        try:
            state_bytes, buffers = _pickler.dumps(root, running, _compile_suspended, recipes)
        except (RecursionError, TeleportError):
            raise
        except Exception:
            # library state that cannot be serialised stays behind; then retry
            if not _state_pickling.prune(root, library_attrs, module_state, lambda value: _pickler.dumps(
                    value, running, _compile_suspended, recipes)):
                raise
            state_bytes, buffers = _pickler.dumps(root, running, _compile_suspended, recipes)
    except RecursionError:
        raise TeleportError("the program state is nested too deeply to serialise "
                            "(raise sys.setrecursionlimit)") from None
    except TeleportError:
        raise
    except Exception as e:
        detail = _pickler.diagnose(_roots(states, main_globals, modules, signals, module_state), running,
                                   _compile_suspended, recipes)
        raise TeleportError(detail or f"cannot serialise the program state: {_pickler._clean(e)}") from None
    finally:
        _state_pickling.end()
    context = _context(main, states, extra_context or {})
    context["variables"] = _variable_labels(states, chain, recipes)
    context["global_types"] = {k: _type_name(v) for k, v in main_globals.items()}
    payload = Payload(pickle_dumps(context, protocol=4), state_bytes, buffers)
    if _log.debug_enabled():
        _log.debug("packed %d frames (innermost %s) into %d bytes, %d out-of-band buffers, in %.1f ms",
                  len(states), states[-1].where, payload.size, len(buffers),
                  1000 * (time.perf_counter() - started))
        for m in modules:
            _log.debug("carrying module attributes of %s: %s", m, ", ".join(sorted(modules[m])))
        for name, _, _, _ in module_state:
            _log.debug("carrying the state of %s", name)
    return payload


def _compile_chain(states: List[FrameState], running: Dict[int, Any], recipes) -> list:
    """Morphs of the chain, innermost first; the last one is the module's code."""
    chain = []
    inner_fn = None
    for state in reversed(states):
        if state.resume.kind == "reexec":
            # the inner morph is reached by resuming the generator on the stack
            running[id(state.inner_generator)] = inner_fn
            fn = _morph.compile_state(state, None, recipes)
        else:
            fn = _morph.compile_state(state, inner_fn, recipes)
        chain.append(fn)
        inner_fn = fn
    return chain


def _compile_suspended(gen, recipes):
    return _morph.compile_state(capture_suspended(gen), None, recipes)


def _context(main, states: List[FrameState], extra: Dict[str, Any]) -> Dict[str, Any]:
    spec = getattr(main, "__spec__", None)
    from .. import __version__
    ctx = {
        "pyteleport": __version__,
        "cwd": os.getcwd(),
        "environ": dict(os.environ),
        "argv": list(sys.argv),
        "path": list(sys.path),
        "main_spec": getattr(spec, "name", None),
        "frames": [s.where for s in states],
        "task_index": None,
    }
    ctx.update(extra)
    return ctx


def _variable_labels(states: List[FrameState], chain: list, recipes) -> list:
    """For ``pyteleport inspect`` (``_payload.anatomy``), outermost frame
    first: the ``(name, type)`` of each value the frame's morph is filled
    with, in the order of its fills, and of each cell of its closure; None
    for a value of pyteleport's own (the next frame's morph, a block's
    state).  Plain data, found by identity: no walk over the objects."""
    out = []
    for state, morph in zip(states, reversed(chain)):
        names: Dict[int, List[str]] = {}
        for k, v in state.locals.items():
            names.setdefault(id(v), []).append(k)
        for i, v in enumerate(state.stack):
            if v is not NULL:
                names.setdefault(id(v), []).append(f"(evaluation stack {i})")
        used = set()
        fills = []
        recipe = recipes.get(id(morph))
        for _, value in (recipe[1][1] if recipe is not None else ()):
            found = [n for n in names.get(id(value), ()) if n not in used]
            used.update(found)
            fills.append((" = ".join(found), _type_name(value)) if found else None)
        cells = []
        closure = recipe[1][3] if recipe is not None and len(recipe[1]) > 3 else None
        by_cell = {id(c): k for k, c in state.cells.items()}
        for cell in closure or ():
            name = by_cell.get(id(cell))
            try:
                contents = cell.cell_contents
            except ValueError:
                name = None
            cells.append(None if name is None or name in used else (name, _type_name(contents)))
        out.append({"fills": fills, "cells": cells})
    return out


def _type_name(value) -> str:
    t = type(value)
    module = getattr(t, "__module__", None)
    name = getattr(t, "__qualname__", t.__name__)
    return name if module in (None, "builtins") else f"{module}.{name}"


def _signal_handlers() -> Dict[int, Any]:
    """Handlers that differ from those a fresh interpreter starts with
    (plain ints for SIG_DFL/SIG_IGN: the C module, not signal.py and its
    enums, which would cost both sides an import)."""
    import _signal as signal
    ignored = {getattr(signal, name) for name in STARTUP_IGNORED_SIGNALS if hasattr(signal, name)}
    out = {}
    for sig in signal.valid_signals():
        try:
            handler = signal.getsignal(sig)
        except (ValueError, OSError):
            continue
        if sig == signal.SIGINT:
            default = signal.default_int_handler
        else:
            default = signal.SIG_IGN if sig in ignored else signal.SIG_DFL
        if handler is not None and handler != default:
            out[int(sig)] = handler
    return out


def _roots(states, main_globals, modules, signals, module_state=()) -> List[Tuple[str, Any]]:
    roots = []
    for s in states:
        fn = s.code.co_name
        for k, v in s.locals.items():
            roots.append((f"{s.where}: local {k!r}", v))
        for k, c in s.cells.items():
            try:
                roots.append((f"{s.where}: variable {k!r}", c.cell_contents))
            except ValueError:
                pass
        for i, v in enumerate(s.stack):
            if v is not NULL:
                roots.append((f"{s.where}: value {i} on the evaluation stack of {fn}()", v))
    for k, v in main_globals.items():
        roots.append((f"__main__ global {k!r}", v))
    for m, attrs in modules.items():
        for k, v in attrs.items():
            roots.append((f"module {m!r} attribute {k!r}", v))
    for sig, handler in signals.items():
        roots.append((f"handler of signal {sig}", handler))
    for name, _, value, _ in module_state:
        roots.append((f"the state of module {name!r}", value))
    return roots
