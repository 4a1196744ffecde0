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
import time
from typing import Optional, Union

from ._errors import TeleportError
from ._exit import end_process, flush_std
from ._log import notice

# set by protect(); module globals, so a snapshot refers to the handler by name
_config: dict = {}
_interrupt = None   # pyteleport._core.interrupt, imported by arm()


def _signum(sig: Union[str, int]) -> int:
    from ._core.interrupt import signal_number
    return signal_number(sig, "pyteleport.slurm.protect()")


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
    _warn_if_under_a_shell(signal)
    own_stage = stage is None
    stage = stage or _job_stage()
    tag = os.environ.get("SLURM_ARRAY_TASK_ID") or "0"
    if grace is None:
        from .backends.slurm._options import DEFAULT_GRACE, env_default
        grace = int(env_default("grace") or DEFAULT_GRACE)
    if own_stage:
        os.makedirs(stage, mode=0o700, exist_ok=True)
        # a predictable name: one another user made first must not be used
        from ._payload.private import UnsafeFile, check_dir
        try:
            check_dir(stage, "the job's stage directory")
        except UnsafeFile as e:
            raise TeleportError(f"pyteleport.slurm.protect(): {e}") from None
        if os.path.exists(os.path.join(stage, f"ckpt.{tag}")) and not _config:
            _resume_here(stage, signal, max_restarts, grace)
    arm(signal, stage, tag, max_restarts, grace, restarts=0,
        task=os.environ.get("SLURM_ARRAY_TASK_ID"), detached=own_stage)


# what a batch script runs in when it does not exec Python
_SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh", "mksh", "tcsh", "csh", "fish"})


def _warn_if_under_a_shell(signal) -> None:
    """``--signal=B:...`` goes to the batch script's process: if that is a
    shell that started Python (no ``exec``), the shell gets it and dies."""
    if os.environ.get("SLURM_STEP_ID") is not None:
        return      # an srun step: its tasks are slurmstepd's children
    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/comm") as f:
            comm = f.read().strip()
        shell = os.path.basename(os.readlink(f"/proc/{ppid}/exe"))
    except OSError:
        return
    # Slurm runs the script as a file named slurm_script: the shell's name is its program's
    if comm == "slurm_script" or comm in _SHELLS or shell in _SHELLS:
        notice(f"pyteleport.slurm.protect(): Python is not the job's batch process (its parent is "
               f"{shell}, pid {ppid}, running the batch script): Slurm's --signal=B:{signal}@... "
               f"reaches the shell, which dies of it; start Python with `exec python ...` in the "
               f"batch script")


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
    # what the handler and the snapshot need is loaded now: a signal may land
    # while the program is importing, when our own imports would fail
    global _interrupt
    from ._core import interrupt as _interrupt
    from .backends.slurm import _cli, _stage   # noqa: F401 (used by _save_and_continue)
    _signal.signal(signum, _on_signal)


def _resume_here(stage: str, signal, max_restarts: int, grace: int) -> None:
    """Replace this process (same pid, so Slurm's signals still reach it) by
    the restore entry on the job's newest snapshot."""
    from .backends.slurm._resubmit import entry_args
    from .backends.slurm._stage import entry_command, signal_name
    sys.stdout.flush()
    sys.stderr.flush()
    args = entry_args(str(signal), max_restarts, grace, 0, os.environ.get("SLURM_ARRAY_TASK_ID"), True)
    # blocked across exec (the mask is inherited): a warning waits for the handler (see start())
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signum(signal)})
    os.execv(sys.executable, entry_command(sys.executable, stage, args, block=signal_name(signal)))


def start(signalled: bool, keep) -> None:
    """The job entry's last step before the restored program runs, with the
    warning signal blocked since Python started (see
    :func:`pyteleport.backends.slurm._stage.job_script`).  If the warning came
    already (``signalled``: while the batch script ran, or pending now), the
    program has not run a single instruction: the payload it was rebuilt
    from is its snapshot, which ``keep(path)`` makes the job's checkpoint,
    and the job is continued as after any snapshot (this process ends).
    Otherwise the signal is unblocked: from now on the handler takes it."""
    c = _config
    # consumed here, or it would reach the handler once unblocked
    if _signal.sigtimedwait([c["signum"]], 0) is not None or signalled:
        path = os.path.join(c["stage"], f"ckpt.{c['tag']}")
        try:
            keep(path)
        except OSError as e:
            _failed(TeleportError(f"cannot keep the payload as the snapshot {path}: {e}"))
        else:
            _continue_elsewhere(path)
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, {c["signum"]})


# the restore entry's modules: a signal handled in their code came before the program runs
_ENTRY_MODULES = frozenset({"pyteleport._core.restore", "pyteleport.backends.slurm._entry"})


def _before_program(frame) -> bool:
    """Whether ``frame`` is the restore entry's (or start()'s): the program
    has not started."""
    return frame.f_globals.get("__name__") in _ENTRY_MODULES or frame.f_code is start.__code__


def _on_signal(signum, frame) -> None:
    # imports nothing: see arm()
    if _config.get("busy"):
        return
    _config["busy"] = True
    if frame is not None and _before_program(frame):
        _in_program(signum)     # just unblocked by start(): nothing of the program to snapshot yet
        return
    try:
        _interrupt.at_next_instruction(frame, _save_and_continue, _failed)
    except Exception as e:   # a failure here must not land in the program
        _failed(e)


def _in_program(signum) -> None:
    """Handle ``signum`` as the program's first frame starts (the first call
    outside the entry's modules)."""
    previous = sys.gettrace()

    def first_call(frame, event, arg):
        if _before_program(frame):
            return None
        sys.settrace(previous)
        _config["busy"] = False
        _on_signal(signum, frame)
        return frame.f_trace    # (a call event's result becomes the frame's tracer)

    sys.settrace(first_call)


# a snapshot refused at the warning (a thread still running, say) is tried
# again this often, for at most this share of the grace time
RETRY_SECONDS = 1.0
RETRY_SHARE = 0.5


def _failed(exc: BaseException) -> None:
    import logging
    log = logging.getLogger("pyteleport")
    c = _config
    first = c.setdefault("first_failure", time.monotonic())
    if time.monotonic() - first + RETRY_SECONDS <= c["grace"] * RETRY_SHARE \
            and _interrupt.again_after(RETRY_SECONDS, _on_retry):
        log.warning("cannot snapshot the program at the Slurm signal: %s; trying again in %g s",
                    exc, RETRY_SECONDS)
    else:
        log.error("cannot snapshot the program at the Slurm signal: %s; it carries on and will be "
                  "stopped at the time limit", exc)
    c["busy"] = False


def _on_retry(frame) -> None:
    _on_signal(_config["signum"], frame)


def _save_and_continue(payload) -> None:
    """Write the snapshot, then continue the job elsewhere; this process ends."""
    from .backends.slurm._stage import write_payload
    c = _config
    path = os.path.join(c["stage"], f"ckpt.{c['tag']}")
    try:
        write_payload(path, payload)
    except (OSError, TeleportError) as e:     # TeleportError: no usable signing key
        _failed(TeleportError(f"cannot write the snapshot {path}: {e}"))
        return
    _continue_elsewhere(path)


def _continue_elsewhere(path: str) -> None:
    """The snapshot is ``path``: requeue this job, or submit a new one that
    continues it if Slurm refuses (past ``max_restarts``: none); this process ends."""
    from .backends.slurm import _cli
    import logging
    log = logging.getLogger("pyteleport")
    c = _config
    flush_std()
    restarts = c["restarts"] + int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if restarts >= c["max_restarts"]:
        log.error("the program was saved to %s, but it has been restarted %d times "
                  "(max_restarts): no job continues it; continue it with: pyteleport resume %s",
                  path, restarts, path)
        end_process(1)
    # said before: the requeue ends this job's processes, possibly before
    # a line written after it (a refusal is said next)
    notice(f"saved the program to {path}; requeuing job {_job_spec()} "
           f"(restart {restarts + 1} of at most {c['max_restarts']})")
    try:
        _cli.requeue(_job_spec())
        end_process(0)
    except TeleportError as e:
        refused = e
    # --- requeue refused: a new job continues the snapshot ---
    from .backends.slurm._resubmit import resubmit
    from .backends.slurm._stage import write_note
    try:
        new_job = resubmit(c["stage"], c["signal"], c["max_restarts"], c["grace"], restarts + 1,
                           c["task"], c["detached"])
        if not c["detached"]:       # for the source that follows the jobs
            write_note(c["stage"], "next", os.environ["SLURM_JOB_ID"], new_job)
    except (TeleportError, OSError) as e:
        log.error("%s, and %s; the program was saved to %s: continue it with: "
                  "pyteleport resume %s", refused, e, path, path)
        end_process(1)
    notice(f"saved the program to {path}; {refused}; submitted job {new_job} to continue it "
           f"(restart {restarts + 1} of at most {c['max_restarts']})")
    end_process(0)
