"""Which files belong to the Python installation and which to the program.

The program's own modules (its script folder, local packages) are what the
snapshot carries module attributes for and what backends ship to targets;
the installation's (standard library, site-packages, user site) the target
has of its own.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False   # typing costs a move milliseconds: annotations only
if TYPE_CHECKING:
    from typing import Tuple

_system_dirs = None
_prefix_dirs = None


def _prefixes() -> Tuple[str, ...]:
    """The installation prefixes: a subset of :func:`system_dirs` known
    without importing sysconfig (which costs milliseconds)."""
    global _prefix_dirs
    if _prefix_dirs is None:
        dirs = {os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, sys.exec_prefix,
                                              sys.base_exec_prefix}}
        _prefix_dirs = tuple(d.rstrip(os.sep) + os.sep for d in dirs)
    return _prefix_dirs


def system_dirs() -> Tuple[str, ...]:
    """Folders of this interpreter's installation, each ending with a separator."""
    global _system_dirs
    if _system_dirs is None:
        _system_dirs = _find_system_dirs()
    return _system_dirs


def _find_system_dirs() -> Tuple[str, ...]:
    import sysconfig
    dirs = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            dirs.add(os.path.realpath(sysconfig.get_path(key)))
        except KeyError:
            pass
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        dirs.add(os.path.realpath(prefix))
    try:
        import site
        dirs.add(os.path.realpath(site.getusersitepackages()))
    except Exception:   # site may be disabled or odd (embedded Pythons)
        pass
    return tuple(d.rstrip(os.sep) + os.sep for d in dirs)


def is_system_path(path: str, resolved: bool = False) -> bool:
    """Whether ``path`` (a file or a ``sys.path`` entry) lies in the installation
    (``resolved``: ``path`` is a real path already)."""
    if not path:
        return False
    real = (path if resolved else os.path.realpath(path)) + os.sep
    # most files of a program lie under a prefix: then sysconfig is not needed
    return real.startswith(_prefixes()) or real.startswith(system_dirs())


class RealPaths:
    """``os.path.realpath`` for many files at once: each folder is resolved
    once (realpath checks every component of every path, which made checking
    the files of all loaded modules cost milliseconds)."""

    def __init__(self):
        self._dirs = {}

    def __call__(self, path: str) -> str:
        head, tail = os.path.split(os.path.abspath(path))
        real_head = self._dirs.get(head)
        if real_head is None:
            real_head = self._dirs[head] = os.path.realpath(head)
        joined = os.path.join(real_head, tail)
        return os.path.realpath(joined) if os.path.islink(joined) else joined
