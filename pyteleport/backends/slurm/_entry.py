"""Runs in the batch job: resumes the staged program.

``python -c '...main()' STAGE [--protect SIGNAL MAX_RESTARTS] [--grace SECONDS]
[--restarts N] [--task TAG] [--detached] [--signalled]``.  Resumes
``STAGE/ckpt.<task>`` if a restarted job left one, else ``STAGE/payload.<task>``
(removed once the program runs), reporting the verdict in
``STAGE/status.<task>``; as the program exits,
its exit status goes to ``STAGE/exit.<jobid>`` (unless ``--detached``: no source
follows the job).  ``--restarts`` counts the jobs that ran the program before
this one, ``--task`` the array task it ran as (a job that continues an array
task is no array task itself).  The program sees the environment it had at
the move plus what the job changed or added (``SLURM_*``, ``setup``), as
``sbatch --export=ALL`` would give it, without ``SLURM_*`` variables of
earlier jobs; :func:`pyteleport.task_index` is the array task's index.
With ``--protect``, the signal is blocked until the program is about to run,
and one that came before (``--signalled``: while the batch script ran)
continues the job from the file it was rebuilt from
(:func:`pyteleport.slurm.start`).
"""
from __future__ import annotations

import atexit
import os
import sys


class _Source:
    """The file the program is rebuilt from.  ``payload.<task>`` (``staged``)
    stays until the program runs: a warning that comes first makes it the
    program's snapshot (:meth:`keep`, see :func:`pyteleport.slurm.start`);
    else, or if the rebuild fails, it is removed (:meth:`drop`).  A
    checkpoint stays until a newer one replaces it or the program ends."""

    def __init__(self, path: str, staged: bool):
        from ..._core.restore import open_payload
        self.path, self.staged = path, staged
        self.f = open_payload(path, "payload" if staged else "checkpoint")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def keep(self, ckpt: str) -> None:
        """Make it the checkpoint ``ckpt`` (the same signed format; raises OSError)."""
        if self.staged:
            os.replace(self.path, ckpt)
            self.staged = False

    def drop(self, *_) -> None:
        if self.staged:
            self.staged = False
            try:
                os.unlink(self.path)
            except OSError:
                pass


def _cleanup(stage: str, tag: str, detached: bool) -> None:
    """At the program's normal end: this task's snapshot; with no source
    following the job (``--detached``, or the source stopped following at a
    hang-up), its status too and the stage once empty."""
    from ._target import DETACHED
    stopped_following = os.path.lexists(os.path.join(stage, DETACHED))
    detached = detached or stopped_following
    for name in (f"ckpt.{tag}", f"status.{tag}", "source") if detached else (f"ckpt.{tag}",):
        try:
            os.unlink(os.path.join(stage, name))
        except OSError:
            pass
    if stopped_following:
        _remove_notes(stage)
    if detached:
        try:
            os.rmdir(stage)
        except OSError:
            return
        from ._stage import remove_base
        remove_base(stage)


def _remove_notes(stage: str) -> None:
    """The notes left for a source that no longer follows, once no task of
    the job is left in the stage."""
    from ._target import DETACHED
    try:
        names = os.listdir(stage)
    except OSError:
        return
    if any(n.startswith(("ckpt.", "status.", "payload.")) for n in names):
        return      # another task goes on
    for name in names:
        if name == DETACHED or name.startswith(("exit.", "next.")):
            try:
                os.unlink(os.path.join(stage, name))
            except OSError:
                pass


class _CancelledWhileRebuilding:
    """``scancel`` (SIGTERM) before the program runs: nothing of this task
    may stay in the stage, where no one would ever resume it (a job with no
    source following it leaves nobody to clean up), and the source, if it
    follows, is told why.  Undone as the program is about to run (its own
    handler, if the payload brought one, is left in place)."""

    def __init__(self, stage: str, tag: str, detached: bool, stream: "_Source", status_fd: int):
        self.stage, self.tag, self.detached = stage, tag, detached
        self.stream, self.status_fd = stream, status_fd
        self.installed = False

    def install(self) -> None:
        import _signal
        _signal.signal(_signal.SIGTERM, self)
        self.installed = True

    def undo(self) -> None:
        import _signal
        if _signal.getsignal(_signal.SIGTERM) is self:
            _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
        self.installed = False

    def __call__(self, signum, _frame) -> None:
        self.stream.drop()
        try:
            os.write(self.status_fd, b"\x1b[PYTELEPORT-STATUS] ERR the job was cancelled (SIGTERM) "
                                     b"while it rebuilt the program\n")
        except OSError:
            pass
        _cleanup(self.stage, self.tag, self.detached)
        sys.stderr.write("pyteleport: the job was cancelled while it rebuilt the program\n")
        sys.stderr.flush()
        os._exit(128 + signum)


def _parse(argv):
    """``(stage, options)``; ``options["protect"]`` is ``(signal, max_restarts)``."""
    stage, rest, opts = argv[0], list(argv[1:]), {}
    while rest:
        key = rest.pop(0)
        if key in ("--detached", "--signalled"):
            opts[key[2:]] = True
        elif key == "--protect":
            opts["protect"] = (rest.pop(0), int(rest.pop(0)))
        else:
            opts[key[2:]] = rest.pop(0)
    return stage, opts


def _await_payload(stage: str, payload: str, ckpt: str, timeout: float = 600) -> None:
    """Wait until the source has staged the payload (it submits the job
    first, then packs the program); end quietly if the move was called off
    (the stage is gone) and with an error after ``timeout`` seconds."""
    import time
    from ._stage import remove_stage, source_gone
    deadline = time.monotonic() + timeout
    delay = 0.001
    next_look = 0.0
    while not (os.path.exists(payload) or os.path.exists(ckpt)):
        if not os.path.isdir(stage):
            sys.exit(0)
        if time.monotonic() >= next_look:
            next_look = time.monotonic() + 0.25
            # staged, then the lease released: look again for the payload after
            if source_gone(stage) and not (os.path.exists(payload) or os.path.exists(ckpt)):
                sys.stderr.write(f"pyteleport: the program that submitted this job ended before "
                                 f"staging it: nothing to run (stage {stage} removed)\n")
                remove_stage(stage)
                sys.exit(0)
        if time.monotonic() > deadline:
            sys.stderr.write(f"pyteleport: no payload in {stage} after {timeout:g} s: the "
                             "program that submitted this job did not stage it (it ended?)\n")
            sys.exit(2)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _exit_status(code) -> int:
    """The process exit status ``SystemExit(code)`` gives."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def main(argv=None) -> None:
    stage, opts = _parse(sys.argv[1:] if argv is None else argv)
    detached = opts.get("detached", False)
    job_env = dict(os.environ)
    index = opts.get("task") or job_env.get("SLURM_ARRAY_TASK_ID")
    tag = index or "0"
    ckpt = os.path.join(stage, f"ckpt.{tag}")
    payload = os.path.join(stage, f"payload.{tag}")
    status = os.path.join(stage, f"status.{tag}")
    from ._stage import check_stage
    unsafe = check_stage(stage)
    if unsafe is not None:
        sys.stderr.write(f"pyteleport: {unsafe}\n")
        sys.exit(2)
    if not os.path.lexists(ckpt) and not os.path.lexists(status):
        _await_payload(stage, payload, ckpt)       # the job was submitted before the move
    try:
        status_fd = os.open(status,
                            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as e:
        sys.stderr.write(f"pyteleport: cannot write into the stage directory {stage}: {e.strerror}\n")
        sys.exit(2)
    from ..._core.restore import PayloadError
    try:
        stream = _Source(ckpt, False) if os.path.lexists(ckpt) else _Source(payload, True)
    except (OSError, PayloadError) as e:
        reason = (f"cannot open {e.filename}: {e.strerror} (was the job requeued without a checkpoint?)"
                  if isinstance(e, OSError) else str(e))
        os.write(status_fd, f"\x1b[PYTELEPORT-STATUS] ERR {reason}\n".encode())
        sys.stderr.write(f"pyteleport: {reason}\n")
        sys.exit(2)

    from ..._core import restore as _restore

    def after_context() -> None:
        # SLURM_* of the job the snapshot was taken in (the program's environment) are stale here
        for key in [k for k in os.environ if k.startswith("SLURM_") and k not in job_env]:
            del os.environ[key]
        if "protect" in opts:
            from ... import slurm
            from ._options import DEFAULT_GRACE
            slurm.arm(opts["protect"][0], stage, tag, opts["protect"][1],
                      int(opts.get("grace", DEFAULT_GRACE)), int(opts.get("restarts", 0)),
                      index, detached)

    def before_run() -> None:
        if "protect" in opts:
            from ... import slurm
            slurm.start(opts.get("signalled", False), stream.keep)
        stream.drop()
        if cancelled.installed:
            cancelled.undo()

    cancelled = _CancelledWhileRebuilding(stage, tag, detached, stream, status_fd)
    if "protect" not in opts:
        # a requeued job needs its payload: with --protect, a SIGTERM stays
        # Slurm's (the job may come back); without, it is the job's end
        cancelled.install()
    atexit.register(_cleanup, stage, tag, detached)
    try:
        _restore.restore(stream, status_fd, launch_env=job_env,
                         task_index=int(index) if index is not None else None,
                         after_context=after_context, before_run=before_run, on_error=stream.drop)
    except SystemExit as e:
        if not detached and "SLURM_JOB_ID" in job_env:
            # the job's outcome for the source, even once Slurm has forgotten the job
            from ._stage import write_note
            try:
                write_note(stage, "exit", job_env["SLURM_JOB_ID"], str(_exit_status(e.code)))
            except OSError:
                pass
        raise
