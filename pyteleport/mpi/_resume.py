"""Resuming one rank of an MPI checkpoint directory (see ``_dir``).

``pyteleport resume DIR`` when DIR is a directory, in every rank of a launch
(``mpirun -n N pyteleport resume DIR``; a 1-rank directory also without a
launcher).  Each rank:

1. tells its rank and the launch's size from the launcher's environment
   (as ``_rank`` does), reads the manifest and checks the
   directory (complete, one Python version, every rank file the one the
   manifest lists, as many ranks as this launch has); a refusal is one line
   on stderr (from rank 0) and exit code 2, before MPI starts;
2. rebuilds its own rank's program; MPI is initialised once the process
   context is restored, and the ranks then agree (an all-gather) that every
   one of them read its payload, and again that every one rebuilt its
   program, before any runs it: if one fails, it reports why and every rank
   exits with code 2.

Started by a backend (:func:`main`): with the mpirun backend (``--stage``,
:func:`pyteleport.mpi.teleport`), each rank also reports its verdict in
``DIR/status.<rank>`` and waits on the FIFO ``DIR/go`` before running, as
``_rank`` describes; in a Slurm job (``--verdict``, or
``--shared N``: every rank resumes one payload), rank 0 reports the whole
launch's verdict in ``status.0``, as the slurm backend expects.
"""
import os
import sys

from . import _dir
from .._exit import end_process
from .._launch import rank_from_env
from ._rank import _wait_for_go

EXIT_REFUSED = 2


def _refuse(message: str, say: bool, status_path=None, fd=None) -> None:
    """Report ``message`` (on ``fd``, or in the stage's status file, else on
    stderr if ``say``: a refusal every rank makes alike is said by rank 0
    only), exit 2."""
    if fd is None and status_path is not None:
        try:
            fd = os.open(status_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError:
            pass
    if fd is not None:
        _report(message, fd)
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
    """The ranks' agreements around the restore entry (see the module doc).

    ``where``: names this rank's payload in messages; ``status_fd``: this
    rank's own status channel (a backend's stage); ``verdict_fd`` (rank 0
    only): the status channel of the whole launch, told once every rank has
    rebuilt its program, or the first rank's reason why not; ``go_fd``: wait
    on it before running; ``loaded``: called by rank 0 once every rank has
    read its payload; ``protect``: ``(stage, signal, max_restarts)`` of a
    Slurm job surviving time limits (see _protect); ``launch_env``: the
    environment the launch started this rank with."""

    def __init__(self, where: str, size_message, rank: int, ranks: int, status_fd=None,
                 verdict_fd=None, go_fd=None, loaded=None, protect=None, launch_env=None):
        self.where = where
        self.launch_env = launch_env if launch_env is not None else {}
        self.size_message = size_message
        self.rank = rank
        self.ranks = ranks
        self.status_fd = status_fd
        self.verdict_fd = verdict_fd
        self.go_fd = go_fd
        self.loaded = loaded
        self.protect = protect
        self.agreed = 0          # agreements passed so far

    def _agree(self, error) -> None:
        from ._world import mpi
        comm = mpi().COMM_WORLD
        errors = comm.allgather(error)
        self.agreed += 1
        failed = [e for e in errors if e is not None]
        if failed and self.verdict_fd is not None:
            _report(failed[0], self.verdict_fd)
        if error is None and failed:
            # the failing rank says why, then meets us here: leaving earlier
            # would let the launcher kill it before it has told
            _leave_together(comm)

    def after_context(self) -> None:
        from ._world import drop_stale_launch_variables, mpi
        drop_stale_launch_variables(self.launch_env)     # before MPI_Init reads them
        size = mpi().COMM_WORLD.Get_size()
        if size != self.ranks:
            _refuse(self.size_message(size), self.rank == 0, fd=self.verdict_fd)
        self._agree(None)
        if self.loaded is not None and self.rank == 0:
            self.loaded()
        if self.protect is not None:
            from ._protect import install
            install(*self.protect, self.rank)

    def before_run(self) -> None:
        self._agree(None)
        if self.verdict_fd is not None:
            os.write(self.verdict_fd, b"\x1b[PYTELEPORT-STATUS] OK\n")
            os.close(self.verdict_fd)
        if self.go_fd is not None:
            _wait_for_go(self.go_fd, os.path.dirname(self.where))

    def on_error(self, message: str) -> None:
        """This rank cannot rebuild its program: tell the others (at the
        agreement they are waiting in), report, exit 2."""
        message = f"{self.where}: {message}"
        try:
            if self.agreed < 2:
                self._agree(message)
            from ._world import mpi
            comm = mpi().COMM_WORLD
        except Exception:   # MPI itself failing: the launcher ends the others
            comm = None
        _report(message, self.status_fd)
        if comm is not None:
            _leave_together(comm)
        os._exit(EXIT_REFUSED)


def _leave_together(comm) -> None:
    """Every rank refuses: end MPI together and exit 2, each rank with
    its own code (no rank may end MPI's way out early: see _exit)."""
    comm.Barrier()
    from ._world import mpi
    mpi().Finalize()
    end_process(EXIT_REFUSED)


def _size_message(directory: str, ranks: int, size: int) -> str:
    return (f"{directory} holds {ranks} rank{'s' if ranks != 1 else ''}; this launch has {size}: "
            f"run `{_dir.launch_hint(directory, ranks)}`")


def _launch_rank():
    """``(rank, size)`` of this process; a process started without a
    launcher is a singleton MPI process."""
    rank, size = rank_from_env(os.environ)
    return (0, 1) if rank is None else (rank, size)


def resume_dir(directory: str, mode: str = "", protect=None) -> None:
    """Resume this process's rank of the checkpoint ``directory``; does not
    return.  ``mode``: ``""`` (``pyteleport resume``), ``"stage"`` (the
    mpirun backend's stage: a status file per rank, the ``go`` FIFO) or
    ``"verdict"`` (rank 0 tells the launch's verdict in ``status.0`` and,
    unless ``protect`` is given, removes the rank files once every rank has
    read its own)."""
    rank, size = _launch_rank()
    status_path = os.path.join(directory, f"status.{rank}") if mode == "stage" else None
    verdict_path = os.path.join(directory, "status.0") if mode == "verdict" and rank == 0 else None
    try:
        manifest = _dir.read_manifest(directory)
        _dir.check(directory, manifest, sys.version_info[:2])
    except _dir.CheckpointError as e:
        _refuse(str(e), rank == 0, status_path or verdict_path)
    if size is not None and size != manifest.ranks:
        _refuse(_size_message(directory, manifest.ranks, size), rank == 0, status_path or verdict_path)

    def loaded() -> None:
        names = [name for name, _, _ in _dir.rank_files(directory)]
        for name in [_dir.MANIFEST] + names:
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass

    _resume(os.path.join(directory, _dir.rank_file(rank, manifest.slot)), rank, manifest.ranks,
            lambda size: _size_message(directory, manifest.ranks, size), status_path, verdict_path,
            os.path.join(directory, "go") if mode == "stage" else None,
            loaded if verdict_path is not None and protect is None else None, protect)


def resume_shared(stage: str, ranks: int, protect=None) -> None:
    """A fan-out under a launcher that has no source next to it (srun in a
    Slurm job): every rank resumes ``stage/payload.0``; rank 0 tells the
    verdict in ``stage/status.0``; does not return."""
    rank, size = _launch_rank()
    verdict_path = os.path.join(stage, "status.0") if rank == 0 else None

    def size_message(size: int) -> str:
        return f"the launcher started {size} ranks, not the {ranks} asked for (ntasks)"

    if size is not None and size != ranks:
        _refuse(size_message(size), rank == 0, verdict_path)
    _resume(os.path.join(stage, "payload.0"), rank, ranks, size_message, None,
            verdict_path, None, None, protect)


def _resume(path, rank, ranks, size_message, status_path, verdict_path, go_path, loaded,
            protect=None) -> None:
    launch_env = dict(os.environ)
    status_fd = verdict_fd = go_fd = None
    try:
        if status_path is not None:
            status_fd = os.open(status_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        if verdict_path is not None:
            verdict_fd = os.open(verdict_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        if go_path is not None:
            # a FIFO the source holds open: opened now (the source may commit
            # and remove the directory as soon as every rank confirmed)
            go_fd = os.open(go_path, os.O_RDONLY | os.O_NONBLOCK)
            os.set_blocking(go_fd, True)
        from .._core.restore import PayloadError, open_payload
        stream = open_payload(path, "checkpoint file")
    except PayloadError as e:
        _refuse(f"rank {rank}: {e}", True, None, status_fd if status_fd is not None else verdict_fd)
    except OSError as e:
        _refuse(f"rank {rank}: cannot open {e.filename}: {e.strerror}", True, None,
                status_fd if status_fd is not None else verdict_fd)
    agreements = _Ranks(path, size_message, rank, ranks, status_fd, verdict_fd, go_fd, loaded, protect,
                        launch_env)
    from .._core import restore as _restore
    _restore.restore(stream, status_fd, launch_env=launch_env, task_index=rank,
                     after_context=agreements.after_context, before_run=agreements.before_run,
                     on_error=agreements.on_error)


def main(argv=None) -> None:
    """Entry of the ranks a backend starts: ``DIR [--stage|--verdict]`` or
    ``STAGE --shared N``, then ``--protect SIGNAL MAX_RESTARTS`` in a Slurm
    job surviving time limits (a requeued job resumes its checkpoint), and
    ``--detached`` when no source follows the job (rank 0 removes the stage
    once the program has ended)."""
    argv = sys.argv[1:] if argv is None else argv
    if "--detached" in argv:
        argv = [a for a in argv if a != "--detached"]
        if _launch_rank()[0] == 0:
            import atexit
            from ..backends.slurm._stage import remove_stage
            atexit.register(remove_stage, argv[0])
    protect = None
    if "--protect" in argv:
        at = argv.index("--protect")
        import signal
        protect = (argv[0], int(getattr(signal, "SIG" + argv[at + 1])), int(argv[at + 2]))
        argv = argv[:at] + argv[at + 3:]
        from ._protect import checkpoint_dir
        saved = checkpoint_dir(argv[0])
        if os.path.exists(os.path.join(saved, _dir.MANIFEST)):
            resume_dir(saved, "", protect)
    if argv[1:2] == ["--shared"]:
        resume_shared(argv[0], int(argv[2]), protect)
    resume_dir(argv[0], argv[1][2:] if len(argv) > 1 else "", protect)
