"""The target's side of a moved cell: run the rest of the cell, then write
the namespace back for the kernel (a signed file, as a checkpoint is)."""
from __future__ import annotations

import linecache
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict

_NEVER_RETURNED = frozenset({"__builtins__", "__loader__", "__spec__", "__name__", "__file__",
                             "__cached__", "__package__", "__doc__"})


def run_cell(entry, namespace: dict, cell: dict) -> None:
    """Run the cell's frames (``entry``), then the rest of its statements;
    write the namespace back whatever happens; exit with the cell's code."""
    code = 0
    display = None
    try:
        exec(entry, namespace)
        rest = cell.get("rest")
        if rest is not None:
            display = _run_rest(rest, namespace)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
            tb = tb.tb_next     # this module's own frames: not the user's
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        code = 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        from ..api import _flush_std
        _flush_std()
        if cell.get("back") is not None:
            _write_back(cell["back"], namespace, display)
        elif display is not None and code == 0:
            # a cell's checkpoint resumed as a script: its last value shown, as IPython would
            print(repr(display), flush=True)
    sys.exit(code)


def _run_rest(rest: dict, namespace: dict):
    """The statements after the moved one; the value of a last expression
    (IPython displays it), or None."""
    import ast
    source, filename = rest["source"], rest["filename"]
    # tracebacks show the cell's lines here too
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    nodes = ast.parse(source, filename).body[rest["after"] + 1:]
    last = nodes.pop() if rest["display_last"] and nodes else None
    if nodes:
        exec(compile(ast.Module(body=nodes, type_ignores=[]), filename, "exec"), namespace)
    if last is not None:
        return eval(compile(ast.Expression(body=last.value), filename, "eval"), namespace)
    return None


def _write_back(path: str, namespace: dict, display) -> None:
    from .._core.pack import _compile_suspended
    from .._payload import pickler
    from .._payload.container import Payload, write_file
    from .._payload.cpickle import dumps as pickle_dumps
    names = {k: v for k, v in namespace.items() if k not in _NEVER_RETURNED}
    dropped: Dict[str, str] = {}
    root = {"names": names, "display": display}
    try:
        state, buffers = pickler.dumps(root, {}, _compile_suspended, {})
    except Exception:
        # leave out what cannot be serialised, and say so
        dropped = pickler.unpicklable(names, {}, _compile_suspended, {})
        if pickler.unpicklable({"display": display}, {}, _compile_suspended, {}):
            root["display"] = None
        for name in dropped:
            names.pop(name)
        try:
            state, buffers = pickler.dumps(root, {}, _compile_suspended, {})
        except Exception as e:
            sys.stderr.write(f"pyteleport: cannot send the cell's namespace back: {e}\n")
            return
    context = pickle_dumps({"kind": "cell namespace", "not returned": dropped}, protocol=4)
    try:
        write_file(Payload(context, state, buffers), path, "the cell's results", False)
    except OSError as e:
        sys.stderr.write(f"pyteleport: cannot write the cell's namespace to {path}: {e}\n")


def load(stream):
    """``(names, not returned, value to display)`` from the file written above."""
    import io
    from .._core.restore import _Unpickler
    from .._payload.container import read
    from .._payload.cpickle import loads as pickle_loads
    from .._payload.rebuild import load_state
    _, payload = read(stream, signed=True)
    ctx = pickle_loads(payload.context)
    state = load_state(_Unpickler(io.BytesIO(payload.state), buffers=payload.buffers))
    return state["names"], ctx.get("not returned", {}), state["display"]
