"""Ending the process a program left (it moved, or saved itself and stops).

None of the program's own exit code may run there (``atexit`` handlers,
``finally`` blocks, finalisers): the program goes on elsewhere, where it runs
them once.  So the process ends with :func:`os._exit`, except when an MPI
library is loaded.  MPICH keeps its connection to the launcher open after
``MPI_Finalize`` and closes it in a C ``atexit`` handler; hydra's proxy takes
a connection that closes without that for a crashed rank and kills every
rank of the job with SIGKILL, so that a rank still on its way out ends with
"exit code 9".  There, the C library's ``exit()`` ends the process: it runs
C exit handlers and library finalisers, none of the program's Python code.
"""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn


def flush_std() -> None:
    """Write out what the program left in ``sys.stdout`` and ``sys.stderr``
    (before this process ends, or a step that may end it)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):   # none, closed, or a broken pipe
            pass


def end_process(code: int) -> NoReturn:
    """End this process now with exit status ``code``, running none of the
    program's exit code (its callers flush its streams first: flush_std)."""
    if "mpi4py.MPI" in sys.modules:
        try:
            # _ctypes alone: ctypes' own module is not needed for one call
            import _ctypes
            libc_exit = _ctypes.dlsym(_ctypes.dlopen(None), "exit")
        except (ImportError, OSError, AttributeError):
            pass
        else:
            _ctypes.call_function(libc_exit, (int(code),))
    os._exit(code)
