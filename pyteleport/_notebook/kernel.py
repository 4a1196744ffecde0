"""The kernel's side of moving a cell: what goes (the cell's frames, the
user namespace, the rest of the cell), taking the namespace back, and
stopping the cell here once it ran there.  Also the ``%%teleport`` magic.
"""
from __future__ import annotations

import ast
import linecache
import os
import re
import sys

from .._errors import TeleportError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

# IPython's own names in the user namespace besides user_ns_hidden: output
# and input history (_, __, ___, _7, _i, _ii, _iii, _i7)
_HISTORY_NAME = re.compile(r"_{1,3}|_\d+|_i{1,3}|_i\d+")
_NEVER_SENT = frozenset({"__builtins__", "__loader__", "__spec__"})

# the file name of the code %%teleport runs (its first line calls teleport_here())
_MAGIC_PREFIX = "<pyteleport cell "
_MAGIC_FILE = _MAGIC_PREFIX + "{}>"


class CellMoved(BaseException):
    """Raised at ``teleport()`` in the kernel once the rest of the cell ran on
    the target: it stops the cell here (not an Exception: ``except
    Exception`` in the cell must not catch it).  IPython shows ``summary``;
    a cell that succeeded there ends as succeeded."""

    failed = False

    def __init__(self, summary: str):
        super().__init__(summary)
        self.summary = summary


class CellFailed(CellMoved):
    """The rest of the cell failed on the target (its traceback is in the
    cell's output): the cell ends as failed."""

    failed = True


CellFailed.__module__ = CellMoved.__module__ = "pyteleport"   # as IPython shows them


def without_shell_names(namespace: Dict[str, Any]) -> Dict[str, Any]:
    """``namespace`` without what IPython put there (``get_ipython``, ``In``,
    ``Out``, ``exit``, the history's ``_``, ``_i3``, ...), when it is the
    running shell's user namespace; else ``namespace`` itself."""
    ip = shell()
    if ip is None or namespace is not ip.user_ns and namespace.get("get_ipython") is None:
        return namespace
    hidden = getattr(ip, "user_ns_hidden", {})
    return {k: v for k, v in namespace.items() if k not in hidden and not _HISTORY_NAME.fullmatch(k)}


def shell():
    """The running IPython shell (a kernel's too), or None."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return get() if get is not None else None


class CellMove:
    """One cell on its way: what the payload carries, and the way back."""

    def __init__(self, ip, outer, rest: Optional[dict], way_back: bool = True):
        self.ip = ip
        self.outer = outer              # the cell's frame: the outermost one that moves
        self.rest = rest                # the cell's statements after the current one
        # where the target writes the namespace back (None: a checkpoint, no way back)
        self.back = _back_path() if way_back else None
        self.not_sent: Dict[str, str] = {}
        self.sent: List[str] = []

    def namespace(self) -> Dict[str, Any]:
        """The user namespace as it goes: without IPython's own names, nor
        what could not be serialised (see :meth:`leave_out`)."""
        names = {k: v for k, v in without_shell_names(self.ip.user_ns).items()
                 if k not in _NEVER_SENT and k not in self.not_sent}
        self.sent = sorted(names)
        return names

    def leave_out(self, reasons: Dict[str, str]) -> None:
        self.not_sent.update(reasons)

    def left_out(self) -> str:
        return _reasons(self.not_sent)

    def context(self) -> dict:
        return {"cell": {"rest": self.rest, "back": self.back}}

    def finish(self, code: int, where: str) -> None:
        """The target ended with ``code``: take its namespace in; raise
        :class:`CellMoved` (the cell stops here)."""
        back = _read_back(self.back)
        parts = [f"the cell ran on {where} (exit code {code})"]
        if back is None:
            parts.append("nothing came back (the target was killed?)")
        else:
            names, not_returned, display = back
            ns = self.ip.user_ns
            for gone in [k for k in self.sent if k not in names]:
                ns.pop(gone, None)      # deleted there
            ns.update(names)
            parts.append(f"{len(names)} names came back")
            if not_returned:
                parts.append("not returned: " + _reasons(not_returned))
            if display is not None and code == 0:
                self.ip.displayhook(display)
        if self.not_sent:
            parts.append("not sent: " + self.left_out())
        _install_hooks(self.ip)
        raise (CellFailed if code else CellMoved)("; ".join(parts))


def _reasons(reasons: Dict[str, str]) -> str:
    return ", ".join(f"{name} ({why})" for name, why in sorted(reasons.items()))


def cell_move(frame, way_back: bool = True) -> Optional[CellMove]:
    """The cell move ``teleport()`` (or, without ``way_back``,
    ``checkpoint()``) called at ``frame`` makes, or None when the program is
    not running in an IPython cell."""
    ip = shell()
    if ip is None:
        return None
    outer = None
    f = frame
    while f is not None:
        if f.f_globals is ip.user_ns and f.f_code.co_name == "<module>":
            outer = f       # the outermost: the cell's own frame
            if f.f_code.co_filename.startswith(_MAGIC_PREFIX):
                break       # %%teleport's code: the magic's frames above stay
        f = f.f_back
    if outer is None:
        return None
    filename = outer.f_code.co_filename
    if filename.startswith(_MAGIC_PREFIX):
        return CellMove(ip, outer, None, way_back)
    if filename not in getattr(getattr(ip, "compile", None), "_filename_map", {}):
        return None     # not a cell: a script IPython runs (`ipython script.py`) moves whole
    return CellMove(ip, outer, _rest_of_cell(filename, outer.f_lineno), way_back)


def _rest_of_cell(filename: str, lineno: int) -> dict:
    """The cell's statements after the one running at ``lineno`` (IPython
    runs a cell one top-level statement at a time), as source for the target."""
    source = "".join(linecache.getlines(filename))
    if not source:
        raise TeleportError(f"{filename}: the source of this cell is not known: cannot move the rest of it")
    nodes = ast.parse(source).body
    current = next((k for k, node in enumerate(nodes)
                    if _first_line(node) <= lineno <= (node.end_lineno or node.lineno)), None)
    if current is None:
        raise TeleportError(f"{filename}:{lineno}: cannot tell which statement of the cell runs")
    return {"source": source, "filename": filename, "after": current,
            "display_last": isinstance(nodes[-1], ast.Expr) and current < len(nodes) - 1}


def _first_line(node) -> int:
    lines = [node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())]
    return min(lines)


def _back_path() -> str:
    """A private file the target writes the namespace to: in ``./.pyteleport``,
    which a Slurm job's nodes see as the stage does."""
    from .._payload.private import UnsafeFile, check_dir
    base = os.path.join(os.getcwd(), ".pyteleport")
    os.makedirs(base, mode=0o700, exist_ok=True)
    try:
        check_dir(base, "the notebook's result directory")
    except UnsafeFile as e:
        raise TeleportError(str(e)) from None
    return os.path.join(base, f"cell-{os.getpid()}-{os.urandom(6).hex()}.pyteleport")


def _read_back(path: str):
    """``(names, not returned, value to display)`` the target wrote, or None."""
    from .._core.restore import open_payload
    from .._payload.container import PayloadError
    try:
        stream = open_payload(path, "the cell's results")
    except (OSError, PayloadError):
        return None
    try:
        from .target import load
        with stream:
            return load(stream)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


_installed: set = set()


def _install_hooks(ip) -> None:
    """IPython shows a :class:`CellMoved` as its summary, and a cell that
    succeeded on the target as succeeded (not as an error of this kernel)."""
    if id(ip) in _installed:
        return
    _installed.add(id(ip))
    previous_types = tuple(getattr(ip, "custom_exceptions", ()))
    previous = getattr(ip, "CustomTB", None) if previous_types else None

    def show(shell, etype, value, tb, tb_offset=None):
        if isinstance(value, CellFailed):
            shell.showtraceback(exception_only=True)    # the cell's error: what and where it ran
            return None
        if isinstance(value, CellMoved):
            sys.stdout.write(f"pyteleport: {value.summary}\n")
            return None
        return previous(etype, value, tb, tb_offset) if previous is not None else None

    ip.set_custom_exc((CellMoved,) + previous_types, show)

    def after(result) -> None:
        if isinstance(result.error_in_exec, CellMoved) and not result.error_in_exec.failed:
            result.error_in_exec = None

    ip.events.register("post_run_cell", after)


def teleport_here(backend, options: dict) -> None:
    """The first statement of the code ``%%teleport`` runs."""
    from ..api import _teleport
    _teleport(sys._getframe(1), backend, **options)


def teleport_magic(line: str, cell: str) -> None:
    """``%%teleport [BACKEND] [OPTION=VALUE ...]``: run the cell on the target
    with the user namespace, and bring the namespace back."""
    ip = shell()
    backend, options = _parse_magic_line(line)
    filename = _MAGIC_FILE.format(getattr(ip, "execution_count", 0))
    linecache.cache[filename] = (len(cell), None, cell.splitlines(True), filename)
    tree = ast.parse(cell, filename)
    call = ast.parse(f"__import__('pyteleport._notebook.kernel', fromlist=['_']).teleport_here("
                     f"{backend!r}, {options!r})").body[0]
    tree.body.insert(0, call)
    code = compile(ast.fix_missing_locations(tree), filename, "exec")
    _install_hooks(ip)
    try:
        exec(code, ip.user_ns)
    except CellMoved as moved:
        if moved.failed:
            raise
        sys.stdout.write(f"pyteleport: {moved.summary}\n")


def _parse_magic_line(line: str):
    """``slurm partition=gpu time=01:00:00 cpus_per_task=4`` -> backend, options
    (a value is a Python literal when it reads as one, else a string)."""
    import shlex
    words = shlex.split(line)
    backend = None
    options = {}
    for word in words:
        if "=" not in word:
            if backend is not None:
                raise TeleportError(f"%%teleport {line}: one backend only, then OPTION=VALUE words")
            backend = word
            continue
        key, value = word.split("=", 1)
        try:
            options[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            options[key] = value
    return backend, options


def load_ipython_extension(ip) -> None:
    """``%load_ext pyteleport``: the ``%%teleport`` cell magic."""
    ip.register_magic_function(teleport_magic, magic_kind="cell", magic_name="teleport")
