"""pyteleport: move a running Python program to another process and continue it there.

Public API: :func:`teleport`, :func:`checkpoint`, :func:`protect`,
:class:`TeleportError`, :class:`Backend`.  Importing the package is cheap: the machinery loads on
first use.
"""
from ._errors import TeleportError
from ._state import exit_handlers as _exit_handlers

__version__ = "0.1.0"
__all__ = ["teleport", "bash_teleport", "checkpoint", "protect", "EXIT_SAVED", "TeleportError",
           "Backend", "task_index", "register_state"]

_exit_handlers.install()   # atexit keeps no list we could read at the move


def __getattr__(name):
    if name in ("teleport", "bash_teleport", "checkpoint"):
        from . import api
        return getattr(api, name)
    if name == "mpi":     # also in a resumed process that never ran `import pyteleport.mpi`
        import importlib
        return importlib.import_module(__name__ + ".mpi")
    if name in ("protect", "EXIT_SAVED"):
        from . import _protect
        return getattr(_protect, name)
    if name == "register_state":
        from ._state.registry import register_state
        return register_state
    if name == "Backend":
        from .backends import Backend
        return Backend
    raise AttributeError(f"module 'pyteleport' has no attribute {name!r}")


def task_index():
    """Index of this task in a fan-out; ``None`` outside one.

    In a fan-out of pyteleport's (``teleport(backend="mpirun", n=...)``, a
    Slurm ``array=``), the index it gave the task; else the rank an MPI
    launcher or ``srun`` gave this process (``OMPI_COMM_WORLD_RANK``,
    ``PMIX_RANK``, ``PMI_RANK``, ``MV2_COMM_WORLD_RANK``, ``SLURM_PROCID`` in a
    step of several tasks), else the task of a Slurm array job
    (``SLURM_ARRAY_TASK_ID``).
    """
    import os
    import sys
    restore = sys.modules.get("pyteleport._core.restore")
    index = getattr(restore, "task_index", None)
    if index is not None:
        return index
    from ._launch import launch_rank
    rank = launch_rank(os.environ)
    if rank is not None:
        return rank
    array_task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    return int(array_task) if array_task.isdigit() else None


def load_ipython_extension(ip):
    """``%load_ext pyteleport`` in IPython or Jupyter: the ``%%teleport`` cell magic."""
    from ._notebook.kernel import load_ipython_extension
    load_ipython_extension(ip)
