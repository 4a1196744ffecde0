"""Runs in the batch job: resumes the staged program.

``python -c '...main()' STAGE [--protect SIGNAL MAX_RESTARTS] [--grace SECONDS]
[--restarts N] [--task TAG] [--detached]``.  Resumes ``STAGE/ckpt.<task>`` if a
restarted job left one, else ``STAGE/payload.<task>`` (removed as soon as it is
read), reporting the verdict in ``STAGE/status.<task>``; as the program exits,
its exit status goes to ``STAGE/exit.<jobid>`` (unless ``--detached``: no source
follows the job).  ``--restarts`` counts the jobs that ran the program before
this one, ``--task`` the array task it ran as (a job that continues an array
task is no array task itself).  The program sees the environment it had at
the move plus what the job changed or added (``SLURM_*``, ``setup``), as
``sbatch --export=ALL`` would give it, without ``SLURM_*`` variables of
earlier jobs; :func:`pyteleport.task_index` is the array task's index.
"""
from __future__ import annotations

import atexit
import os
import sys


class _ReadOnce:
    """The payload file, unlinked as soon as the restore entry closes it."""

    def __init__(self, path: str):
        self.path = path
        self.f = open(path, "rb")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def close(self) -> None:
        self.f.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _cleanup(stage: str, tag: str, detached: bool) -> None:
    """At the program's normal end: this task's snapshot; with no source
    following the job (``--detached``), its status too and the stage once empty."""
    for name in (f"ckpt.{tag}", f"status.{tag}") if detached else (f"ckpt.{tag}",):
        try:
            os.unlink(os.path.join(stage, name))
        except OSError:
            pass
    if detached:
        try:
            os.rmdir(stage)
            os.rmdir(os.path.dirname(stage))    # the shared stage_dir, once empty
        except OSError:
            pass


def _parse(argv):
    """``(stage, options)``; ``options["protect"]`` is ``(signal, max_restarts)``."""
    stage, rest, opts = argv[0], list(argv[1:]), {}
    while rest:
        key = rest.pop(0)
        if key == "--detached":
            opts["detached"] = True
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
    deadline = time.monotonic() + timeout
    delay = 0.001
    while not (os.path.exists(payload) or os.path.exists(ckpt)):
        if not os.path.isdir(stage):
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
    if not os.path.exists(ckpt) and not os.path.exists(status):
        _await_payload(stage, payload, ckpt)       # the job was submitted before the move
    try:
        status_fd = os.open(status,
                            os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:
        sys.stderr.write(f"pyteleport: cannot write into the stage directory {stage}: {e.strerror}\n")
        sys.exit(2)
    if os.path.exists(ckpt):
        stream = open(ckpt, "rb")      # kept until a newer one replaces it or the program ends
    else:
        try:
            stream = _ReadOnce(payload)
        except OSError as e:
            os.write(status_fd, f"\x1b[PYTELEPORT-STATUS] ERR cannot open {payload}: {e.strerror}\n".encode())
            sys.stderr.write(f"pyteleport: cannot open {payload}: {e.strerror} "
                             "(was the job requeued without a checkpoint?)\n")
            sys.exit(2)

    from .. import _restore

    def after_context() -> None:
        # SLURM_* of the job the snapshot was taken in (the program's environment) are stale here
        for key in [k for k in os.environ if k.startswith("SLURM_") and k not in job_env]:
            del os.environ[key]
        if "protect" in opts:
            from .. import slurm
            from ._slurm_options import DEFAULT_GRACE
            slurm.arm(opts["protect"][0], stage, tag, opts["protect"][1],
                      int(opts.get("grace", DEFAULT_GRACE)), int(opts.get("restarts", 0)),
                      index, detached)

    atexit.register(_cleanup, stage, tag, detached)
    try:
        _restore.restore(stream, status_fd, launch_env=job_env,
                         task_index=int(index) if index is not None else None,
                         after_context=after_context)
    except SystemExit as e:
        if not detached and "SLURM_JOB_ID" in job_env:
            # the job's outcome for the source, even once Slurm has forgotten the job
            from ._slurm_stage import write_note
            try:
                write_note(stage, "exit", job_env["SLURM_JOB_ID"], str(_exit_status(e.code)))
            except OSError:
                pass
        raise
