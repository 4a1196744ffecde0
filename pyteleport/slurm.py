"""Surviving Slurm time limits and preemption: :func:`protect`.

On the warning signal (``--signal=B:USR2@GRACE`` when the job was submitted,
or a preemption signal), the program is snapshotted at the very instruction
it was interrupted at, the snapshot is written to the stage directory, the
job is requeued (``scontrol requeue``), or, if Slurm refuses, a new job like
it is submitted to continue it, and this process ends; in the next
allocation the job resumes the snapshot.  No safe points are needed in the
program, but a handler cannot run while C code holds the main thread (a long
NumPy call): the grace time must cover that, plus writing the snapshot.
"""
from __future__ import annotations

import os
import signal as _signal
import sys
from typing import Optional, Union

from ._errors import TeleportError

# set by protect(); module globals, so a snapshot refers to the handler by name
_config: dict = {}


def _signum(sig: Union[str, int]) -> int:
    if isinstance(sig, int) or sig.isdigit():
        return int(sig)
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(getattr(_signal, name))
    except AttributeError:
        raise TeleportError(f"unknown signal {sig!r}") from None


def _job_stage() -> str:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    return os.path.join(os.getcwd(), ".pyteleport", f"job-{job}")


def _job_spec() -> str:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    task = os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ["SLURM_JOB_ID"]


def protect(signal: Union[str, int] = "USR2", max_restarts: int = 10,
            stage: Optional[str] = None, grace: Optional[int] = None) -> None:
    """Make the running program survive the end of its Slurm allocation.

    Call it early in a program running in a Slurm batch job whose script
    ``exec``\\ s Python, submitted with ``--signal=B:<signal>@<grace>``.  When
    ``signal`` arrives, the program is saved to ``stage/ckpt.<task>`` (default
    stage: ``./.pyteleport/job-<jobid>``), the job is requeued and this process
    exits; when the requeued job runs the program again, this call resumes the
    saved program instead of returning.  If Slurm refuses to requeue the job
    (``--no-requeue``, site policy), a new job with the same partition, time
    limit, resources and output files (appended to) resumes the snapshot,
    submitted with ``--signal=B:<signal>@<grace>`` (``grace`` default:
    ``PYTELEPORT_SLURM_GRACE`` or 180 s; Slurm does not tell a job its own).
    After ``max_restarts`` restarts the snapshot is still written, but no job
    continues it: ``pyteleport resume`` it.

    ``teleport(backend="slurm", requeue=True)`` does all this itself.
    """
    if "SLURM_JOB_ID" not in os.environ:
        raise TeleportError("pyteleport.slurm.protect(): not running in a Slurm job (no SLURM_JOB_ID)")
    own_stage = stage is None
    stage = stage or _job_stage()
    tag = os.environ.get("SLURM_ARRAY_TASK_ID") or "0"
    if grace is None:
        from .backends._slurm_options import DEFAULT_GRACE, env_default
        grace = int(env_default("grace") or DEFAULT_GRACE)
    if own_stage:
        os.makedirs(stage, mode=0o700, exist_ok=True)
        if os.path.exists(os.path.join(stage, f"ckpt.{tag}")) and not _config:
            _resume_here(stage, signal, max_restarts, grace)
    arm(signal, stage, tag, max_restarts, grace, restarts=0,
        task=os.environ.get("SLURM_ARRAY_TASK_ID"), detached=own_stage)


def arm(signal: Union[str, int], stage: str, tag: str, max_restarts: int, grace: int,
        restarts: int, task: Optional[str], detached: bool) -> None:
    """Install the handler (what :func:`protect` and the job entry share).
    ``restarts``: restarts before this job (jobs that continued the program);
    ``task``: the array task the program runs as; ``detached``: no source
    follows the job (the job's program cleans the stage up itself)."""
    signum = _signum(signal)
    _config.update(signum=signum, signal=_signal.Signals(signum).name[3:], stage=stage, tag=tag,
                   max_restarts=max_restarts, grace=grace, restarts=restarts, task=task,
                   detached=detached, busy=False)
    _signal.signal(signum, _on_signal)


def _resume_here(stage: str, signal, max_restarts: int, grace: int) -> None:
    """Replace this process (same pid, so Slurm's signals still reach it) by
    the restore entry on the job's newest snapshot."""
    from .backends._slurm_resubmit import entry_args
    from .backends._slurm_stage import entry_command
    sys.stdout.flush()
    sys.stderr.flush()
    args = entry_args(str(signal), max_restarts, grace, 0, os.environ.get("SLURM_ARRAY_TASK_ID"), True)
    os.execv(sys.executable, entry_command(sys.executable, stage, args))


def _on_signal(signum, frame) -> None:
    if _config.get("busy"):
        return
    _config["busy"] = True
    from ._interrupt import at_next_instruction
    at_next_instruction(frame, _save_and_continue, _failed)


def _failed(exc: BaseException) -> None:
    import logging
    logging.getLogger("pyteleport").error(
        "cannot snapshot the program at the Slurm signal: %s; it carries on and will be "
        "stopped at the time limit", exc)
    _config["busy"] = False


def _save_and_continue(payload) -> None:
    """Write the snapshot, then requeue this job, or submit a new one that
    continues it if Slurm refuses; this process ends."""
    from .backends import _slurm_cli
    from .backends._slurm_stage import write_payload
    import logging
    log = logging.getLogger("pyteleport")
    c = _config
    path = os.path.join(c["stage"], f"ckpt.{c['tag']}")
    try:
        write_payload(path, payload)
    except OSError as e:
        _failed(TeleportError(f"cannot write the snapshot {path}: {e}"))
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
    restarts = c["restarts"] + int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if restarts >= c["max_restarts"]:
        log.error("the program was saved to %s, but it has been restarted %d times "
                  "(max_restarts): no job continues it; continue it with: pyteleport resume %s",
                  path, restarts, path)
        os._exit(1)
    try:
        _slurm_cli.requeue(_job_spec())
        log.info("saved the program to %s and requeued the job", path)
        os._exit(0)
    except TeleportError as e:
        refused = e
    # --- requeue refused: a new job continues the snapshot ---
    from .backends._slurm_resubmit import resubmit
    from .backends._slurm_stage import write_note
    try:
        new_job = resubmit(c["stage"], c["signal"], c["max_restarts"], c["grace"], restarts + 1,
                           c["task"], c["detached"])
        if not c["detached"]:       # for the source that follows the jobs
            write_note(c["stage"], "next", os.environ["SLURM_JOB_ID"], new_job)
    except (TeleportError, OSError) as e:
        log.error("%s, and %s; the program was saved to %s: continue it with: "
                  "pyteleport resume %s", refused, e, path, path)
        os._exit(1)
    log.info("saved the program to %s; %s; submitted job %s to continue it",
             path, refused, new_job)
    os._exit(0)
