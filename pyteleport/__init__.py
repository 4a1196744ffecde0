"""pyteleport: move a running Python program to another process and continue it there.

Public API: :func:`teleport`, :func:`checkpoint`, :class:`TeleportError`,
:class:`Backend`.  Importing the package is cheap: the machinery loads on
first use.
"""
from ._errors import TeleportError

__version__ = "0.1.0"
__all__ = ["teleport", "bash_teleport", "checkpoint", "TeleportError", "Backend", "task_index"]


def __getattr__(name):
    if name in ("teleport", "bash_teleport", "checkpoint"):
        from . import api
        return getattr(api, name)
    if name == "mpi":     # also in a resumed process that never ran `import pyteleport.mpi`
        import importlib
        return importlib.import_module(__name__ + ".mpi")
    if name == "Backend":
        from .backends import Backend
        return Backend
    raise AttributeError(f"module 'pyteleport' has no attribute {name!r}")


def task_index():
    """Index of this task in a fan-out (array job, MPI rank); ``None`` outside one."""
    import sys
    restore = sys.modules.get("pyteleport._restore")
    return getattr(restore, "task_index", None)
