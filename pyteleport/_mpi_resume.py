"""Resuming one rank of an MPI checkpoint directory (see ``_mpi_dir``).

``pyteleport resume DIR`` when DIR is a directory, in every rank of a launch
(``mpirun -n N pyteleport resume DIR``; a 1-rank directory also without a
launcher).  Each rank:

1. tells its rank and the launch's size from the launcher's environment
   (as ``backends._mpi_rank`` does), reads the manifest and checks the
   directory (complete, one Python version, every rank file the one the
   manifest lists, as many ranks as this launch has); a refusal is one line
   on stderr (from rank 0) and exit code 2, before MPI starts;
2. rebuilds its own rank's program; MPI is initialised once the process
   context is restored, and the ranks then agree (an all-gather) that every
   one of them read its payload, and again that every one rebuilt its
   program, before any runs it: if one fails, it reports why and every rank
   exits with code 2.

Started by a backend (``--stage``: :func:`pyteleport.mpi.teleport`), each
rank also reports its verdict in ``DIR/status.<rank>`` and waits on the
FIFO ``DIR/go`` before running, as ``backends._mpi_rank`` describes.
"""
import os
import sys

from . import _mpi_dir
from .backends._mpi_rank import _wait_for_go, rank_from_env

EXIT_REFUSED = 2


def _refuse(message: str, say: bool, status_path=None) -> None:
    """Report ``message`` (in the stage's status file, else on stderr if
    ``say``: a refusal every rank makes alike is said by rank 0 only), exit 2."""
    if status_path is not None:
        try:
            _report(message, os.open(status_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:
            pass
    elif say:
        _report(message, None)
    os._exit(EXIT_REFUSED)


def _report(message: str, status_fd) -> None:
    """On the status channel if there is one, else on stderr."""
    if status_fd is not None:
        os.write(status_fd, ("\x1b[PYTELEPORT-STATUS] ERR " + message.replace("\n", " ") + "\n").encode())
    else:
        sys.stderr.write(f"pyteleport: {message}\n")
        sys.stderr.flush()


class _Ranks:
    """The ranks' agreements around the restore entry (see the module doc)."""

    def __init__(self, directory: str, rank: int, ranks: int, status_fd=None, go_fd=None):
        self.directory = directory
        self.status_fd = status_fd
        self.rank = rank
        self.ranks = ranks
        self.go_fd = go_fd
        self.agreed = 0          # agreements passed so far

    def _agree(self, error) -> None:
        from ._mpi_world import mpi
        comm = mpi().COMM_WORLD
        errors = comm.allgather(error)
        self.agreed += 1
        if error is None and any(e is not None for e in errors):
            # the failing rank says why, then meets us here: leaving earlier
            # would let the launcher kill it before it has told
            comm.Barrier()
            os._exit(EXIT_REFUSED)

    def after_context(self) -> None:
        from ._mpi_world import mpi
        size = mpi().COMM_WORLD.Get_size()
        if size != self.ranks:
            _refuse(_size_message(self.directory, self.ranks, size), self.rank == 0)
        self._agree(None)

    def before_run(self) -> None:
        self._agree(None)
        if self.go_fd is not None:
            _wait_for_go(self.go_fd)

    def on_error(self, message: str) -> None:
        """This rank cannot rebuild its program: tell the others (at the
        agreement they are waiting in), report, exit 2."""
        message = f"{os.path.join(self.directory, _mpi_dir.rank_file(self.rank))}: {message}"
        try:
            if self.agreed < 2:
                self._agree(message)
            from ._mpi_world import mpi
            comm = mpi().COMM_WORLD
        except Exception:   # MPI itself failing: the launcher ends the others
            comm = None
        _report(message, self.status_fd)
        if comm is not None:
            comm.Barrier()
        os._exit(EXIT_REFUSED)


def _size_message(directory: str, ranks: int, size: int) -> str:
    return (f"{directory} holds {ranks} rank{'s' if ranks != 1 else ''}; this launch has {size}: "
            f"run `{_mpi_dir.launch_hint(directory, ranks)}`")


def resume_dir(directory: str, stage: bool = False) -> None:
    """Resume this process's rank of the checkpoint ``directory``; does not return."""
    launch_env = dict(os.environ)
    rank, size = rank_from_env(launch_env)
    if rank is None:
        rank, size = 0, 1           # no launcher: a singleton MPI process
    status_path = os.path.join(directory, f"status.{rank}") if stage else None
    try:
        manifest = _mpi_dir.read_manifest(directory)
        _mpi_dir.check(directory, manifest, sys.version_info[:2])
    except _mpi_dir.CheckpointError as e:
        _refuse(str(e), rank == 0, status_path)
    if size is not None and size != manifest.ranks:
        _refuse(_size_message(directory, manifest.ranks, size), rank == 0, status_path)
    status_fd = go_fd = None
    try:
        if stage:
            status_fd = os.open(status_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            # a FIFO the source holds open: opened now (the source may commit
            # and remove the directory as soon as every rank confirmed)
            go_fd = os.open(os.path.join(directory, "go"), os.O_RDONLY | os.O_NONBLOCK)
            os.set_blocking(go_fd, True)
        stream = open(os.path.join(directory, _mpi_dir.rank_file(rank)), "rb")
    except OSError as e:
        _refuse(f"rank {rank}: cannot open {e.filename}: {e.strerror}", True, None)
    ranks = _Ranks(directory, rank, manifest.ranks, status_fd, go_fd)
    from . import _restore
    _restore.restore(stream, status_fd, launch_env=launch_env, task_index=rank,
                     after_context=ranks.after_context, before_run=ranks.before_run,
                     on_error=ranks.on_error)


def main(argv=None) -> None:
    """Entry of the ranks a backend starts: ``DIR [--stage]``."""
    argv = sys.argv[1:] if argv is None else argv
    resume_dir(argv[0], stage="--stage" in argv[1:])
