"""Surviving Slurm time limits and preemption: :func:`protect`.

On the warning signal (``--signal=B:USR2@GRACE`` when the job was submitted,
or a preemption signal), the program is snapshotted at the very instruction
it was interrupted at, the snapshot is written to the stage directory, the
job is requeued (``scontrol requeue``) and this process ends; in the next
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
    if isinstance(sig, int):
        return sig
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
            stage: Optional[str] = None) -> None:
    """Make the running program survive the end of its Slurm allocation.

    Call it early in a program running in a Slurm batch job whose script
    ``exec``\\ s Python, submitted with ``--requeue`` and
    ``--signal=B:<signal>@<grace>``.  When ``signal`` arrives, the program is
    saved to ``stage/ckpt.<task>`` (default stage:
    ``./.pyteleport/job-<jobid>``), the job is requeued and this process exits;
    when the requeued job runs the program again, this call resumes the saved
    program instead of returning.  After ``max_restarts`` restarts the snapshot
    is still written, but the job is not requeued: ``pyteleport resume`` it.

    ``teleport(backend="slurm", requeue=True)`` does all this itself.
    """
    if "SLURM_JOB_ID" not in os.environ:
        raise TeleportError("pyteleport.slurm.protect(): not running in a Slurm job (no SLURM_JOB_ID)")
    signum = _signum(signal)
    own_stage = stage is None
    stage = stage or _job_stage()
    tag = os.environ.get("SLURM_ARRAY_TASK_ID") or "0"
    if own_stage:
        os.makedirs(stage, mode=0o700, exist_ok=True)
        if os.path.exists(os.path.join(stage, f"ckpt.{tag}")) and not _config:
            _resume_here(stage, signal, max_restarts)
    _config.update(signum=signum, stage=stage, tag=tag, max_restarts=max_restarts, busy=False)
    _signal.signal(signum, _on_signal)


def _resume_here(stage: str, signal, max_restarts: int) -> None:
    """Replace this process (same pid, so Slurm's signals still reach it) by
    the restore entry on the job's newest snapshot."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    boot = (f"import sys; sys.path.insert(0, {root!r}); "
            "from pyteleport.backends._slurm_entry import main; main()")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-c", boot, stage, "--protect", str(signal), str(max_restarts)])


def _on_signal(signum, frame) -> None:
    if _config.get("busy"):
        return
    _config["busy"] = True
    from ._interrupt import at_next_instruction
    at_next_instruction(frame, _save_and_requeue, _failed)


def _failed(exc: BaseException) -> None:
    import logging
    logging.getLogger("pyteleport").error(
        "cannot snapshot the program at the Slurm signal: %s; it carries on and will be "
        "stopped at the time limit", exc)
    _config["busy"] = False


def _save_and_requeue(payload) -> None:
    from .backends import _slurm_cli
    from .backends._slurm_stage import write_payload
    import logging
    log = logging.getLogger("pyteleport")
    path = os.path.join(_config["stage"], f"ckpt.{_config['tag']}")
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
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if restarts >= _config["max_restarts"]:
        log.error("the program was saved to %s, but the job has been restarted %d times "
                  "(max_restarts): not requeued; continue it with: pyteleport resume %s",
                  path, restarts, path)
        os._exit(1)
    try:
        _slurm_cli.requeue(_job_spec())
    except TeleportError as e:
        log.error("%s; the program was saved to %s: continue it with: pyteleport resume %s",
                  e, path, path)
        os._exit(1)
    log.info("saved the program to %s and requeued the job", path)
    os._exit(0)
