"""Runs in every MPI rank started by the ``mpirun`` backend.

``python -c '...main()' STAGE N``.  Each rank:

1. tells its rank from the launcher's environment (``PMI_RANK``,
   ``OMPI_COMM_WORLD_RANK``, ...) and checks the world size against ``N``;
2. rebuilds the program from ``STAGE/payload`` (the same file for every
   rank) and writes its verdict to ``STAGE/status.<rank>`` (the restore
   entry's status line);
3. waits on the FIFO ``STAGE/go`` until the source has a positive verdict
   from every rank: one byte ``G`` per rank means go; end of file without it
   (the source gave up, or is gone) means exit quietly, without running
   anything of the program, which carries on in the source.

The program sees the environment it had at the move plus what the launch
changed or added (the launcher's ``PMI_*``/``OMPI_*``/... variables, the
backend's ``env`` and ``setup``); :func:`pyteleport.task_index` is the rank.
This module uses the standard library only and imports little: it runs
before the program in every rank.
"""
from __future__ import annotations

import os
import sys

from .._launch import RANK_VARIABLES, rank_from_env

GO = b"G"
READY = "ready"     # the FIFO a rank pokes once its verdict is written
EXIT_ABORTED = 2


def _refuse(stage: str, name: str, message: str) -> None:
    """Report a failure before the restore entry runs, and exit."""
    try:
        fd = os.open(os.path.join(stage, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, ("\x1b[PYTELEPORT-STATUS] ERR " + message.replace("\n", " ") + "\n").encode())
        os.close(fd)
    except OSError:
        sys.stderr.write(f"pyteleport: {message}\n")
    os._exit(EXIT_ABORTED)


def _wait_for_go(go_fd: int, stage: str) -> None:
    """Tell the source this rank's verdict is written, then block until it
    commits (returns) or gives up (exits)."""
    try:
        # a FIFO the source waits on: it wakes at once instead of at its
        # next look at the status files
        ready = os.open(os.path.join(stage, READY), os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(ready, b".")
        finally:
            os.close(ready)
    except OSError:
        pass      # the source looks at the status files anyway
    try:
        data = os.read(go_fd, 1)
    except OSError:
        data = b""
    os.close(go_fd)
    if data != GO:
        os._exit(EXIT_ABORTED)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    stage, expected = argv[0], int(argv[1])
    launch_env = dict(os.environ)
    rank, size = rank_from_env(launch_env)
    if rank is None:
        names = ", ".join(r for r, _ in RANK_VARIABLES)
        _refuse(stage, f"status.pid{os.getpid()}",
                f"cannot tell this process's MPI rank (none of {names} is set): "
                "is the launcher an MPI launcher?")
    if (size is not None and size != expected) or rank >= expected:
        _refuse(stage, f"status.pid{os.getpid()}",
                f"the launcher started {size if size is not None else 'more than ' + str(expected)} "
                f"ranks, not n={expected} (is the rank count also set in mpirun_options?)")
    try:
        status_fd = os.open(os.path.join(stage, f"status.{rank}"),
                            os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        # a FIFO the source holds open: opened without waiting, read blocking
        go_fd = os.open(os.path.join(stage, "go"), os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(go_fd, True)
        from .._core.restore import open_payload
        stream = open_payload(os.path.join(stage, "payload"))
    except Exception as e:     # OSError, PayloadError
        _refuse(stage, f"status.pid{os.getpid()}", f"rank {rank}: cannot use the stage directory: {e}")

    from .._core import restore as _restore
    from ._world import drop_stale_launch_variables
    _restore.restore(stream, status_fd, launch_env=launch_env, task_index=rank,
                     after_context=lambda: drop_stale_launch_variables(launch_env),
                     before_run=lambda: _wait_for_go(go_fd, stage))

