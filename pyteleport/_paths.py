"""Which files belong to the Python installation and which to the program.

The program's own modules (its script folder, local packages) are what the
snapshot carries module attributes for and what backends ship to targets;
the installation's (standard library, site-packages, user site) the target
has of its own.
"""
from __future__ import annotations

import functools
import os
import sys
import sysconfig
from typing import Tuple


@functools.lru_cache(maxsize=1)
def system_dirs() -> Tuple[str, ...]:
    """Folders of this interpreter's installation, each ending with a separator."""
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


def is_system_path(path: str) -> bool:
    """Whether ``path`` (a file or a ``sys.path`` entry) lies in the installation."""
    if not path:
        return False
    return (os.path.realpath(path) + os.sep).startswith(system_dirs())
