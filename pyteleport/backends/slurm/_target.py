"""A submitted job, from the source's side: its handoff, then following it.

:func:`await_handoff` waits until the job's entry reports the program
rebuilt (or says why not); :class:`SlurmTarget` then follows the job to its
end (:mod:`._follow`), passing signals on to it (:mod:`._signals`).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Dict, List, Optional

from ... import _log
from ..._errors import TeleportError
from .. import Target
from . import _cli
from ._stage import remove_stage


class DetachedTarget(Target):
    """``wait=False``: the job runs on by itself; the source exits 0."""

    def wait(self) -> int:
        return 0


# the exit code of a source that stopped following at SIGHUP (as a hang-up would end it)
EXIT_HUNG_UP = 128 + 1


class _HungUp(Exception):
    pass


def _hang_up(signum, frame) -> None:
    raise _HungUp


class SlurmTarget(Target):
    """A job whose program was rebuilt: follow it to its end.  ``stage``:
    the job's stage directory (None: a job followed by ``pyteleport follow``,
    whose stage the job cleans up itself)."""

    def __init__(self, job_id: str, stage: Optional[str], files: str = ""):
        self.job_id = job_id
        self.stage = stage
        self.files = files      # where the job's output goes, for the user

    def wait(self) -> int:
        import signal
        from ._follow import Follower          # (not imported before sbatch)
        from ._signals import forward_signals
        follower = Follower(self.job_id, self.stage)
        previous = signal.signal(signal.SIGHUP, _hang_up)
        try:
            with forward_signals(follower.job_ids):
                while True:
                    try:
                        code = follower.run()
                        break
                    except KeyboardInterrupt:
                        jobs = follower.job_ids()
                        if jobs and _confirm_cancel(",".join(jobs)):
                            for job in jobs:
                                _cli.cancel(job)
        except _HungUp:
            return self._detach(follower.job_ids())
        finally:
            signal.signal(signal.SIGHUP, previous)
        _finish_stage(self.stage)
        return code

    def _detach(self, jobs: List[str]) -> int:
        """The login session dropped: the job goes on by itself (it cleans
        its stage up at its end) and this process says how to follow it again."""
        if self.stage is not None:
            try:
                with open(os.path.join(self.stage, DETACHED), "w"):
                    pass
            except OSError:
                pass
            else:
                records = [r for job in jobs for r in (_cli.show_job(job) or [])]
                if not records or all(r.done for r in records):
                    _finish_stage(self.stage)   # it ended meanwhile: nobody else will
        where = f"; its output is in {self.files}" if self.files else ""
        ids = " ".join(jobs) or self.job_id
        _log.notice(f"the session hung up: slurm job {ids} goes on without pyteleport following "
                    f"it{where}; follow it again with: pyteleport follow {ids.split()[0]}")
        return EXIT_HUNG_UP


# a file in the stage: no source follows the job any more (it cleans up itself)
DETACHED = "detached"


def follow_job(job_id: str) -> int:
    """``pyteleport follow JOBID``: copy a job's output (from its start) to
    this process's streams until it ends; its exit code."""
    records = _cli.show_job(job_id)
    if records is None:
        raise TeleportError(f"slurm job {job_id} is not known to Slurm (it ended long ago, "
                            "or never existed)")
    files = ", ".join(sorted({p for r in records for p in (r.path("StdOut"), r.path("StdErr")) if p}))
    return SlurmTarget(job_id, None, files).wait()


def _confirm_cancel(job_id: str) -> bool:
    """Ctrl-C on the source: cancel the job (asking first at a terminal)."""
    try:
        if not sys.stdin.isatty():
            return True
        sys.stderr.write(f"\ncancel slurm job {job_id}? [y/N] ")
        sys.stderr.flush()
        return sys.stdin.readline().strip().lower() in ("y", "yes")
    except (OSError, ValueError, AttributeError, KeyboardInterrupt):
        return True


def _finish_stage(stage: Optional[str]) -> None:
    """Remove the stage, unless a snapshot is left in it (the job ended
    without finishing the program)."""
    if stage is None:
        return
    try:
        left = [n for n in os.listdir(stage) if n.startswith("ckpt.")]
    except OSError:
        return
    if left:
        import logging     # an error the user must see, even without logging set up
        logging.getLogger("pyteleport").error(
            "slurm backend: the job ended with snapshots left in %s (%s): continue one with: "
            "pyteleport resume PATH", stage, ", ".join(sorted(left)))
        return
    remove_stage(stage)


def hand_over(job_id: str, stage: str, tasks: List[int], args: List[str], wait: bool,
              why: str = "") -> Target:
    """After the job is submitted and the payload staged: say so, then (with
    ``wait``) wait until the job resumed the program and follow it.  If the
    program cannot be resumed there, or the wait is interrupted (Ctrl-C while
    the job is pending), the job is cancelled and its stage removed."""
    from ._options import output_files
    files = output_files(args, job_id)
    announce(job_id, wait, files, why)
    if not wait:
        return DetachedTarget()
    try:
        await_handoff(job_id, stage, tasks)
    except BaseException as e:
        _cli.cancel(job_id)
        remove_stage(stage)
        if isinstance(e, KeyboardInterrupt):
            _log.notice(f"cancelled slurm job {job_id} (interrupted before it resumed the program)")
        raise
    return SlurmTarget(job_id, stage, files)


def announce(job_id: str, wait: bool, files: str, why: str = "") -> None:
    """One line at submission: which job, where its output goes, whether this
    process follows it.  On stderr when the source is left (``wait=False``,
    like sbatch's own line) or stderr is a terminal; logged always."""
    if wait:
        line = f"following slurm job {job_id} (Ctrl-C cancels it); its output is also in {files}"
    else:
        line = (f"submitted slurm job {job_id}; its output is in {files}; pyteleport is not "
                f"following it (wait=False{why})")
    _log.info("%s", line)
    try:
        if not wait or sys.stderr.isatty():
            _log.notice(line)
    except (OSError, ValueError, AttributeError):
        pass


# pending reasons with which a job may never start as submitted
_STUCK_REASONS = {
    "PartitionNodeLimit": "it asks for more nodes than its partition has, or its nodes are down",
    "PartitionTimeLimit": "its time limit is over its partition's",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "BadConstraints": "no node has the features, memory or CPUs it asks for",
    "ReqNodeNotAvail": "a node it needs is not available (down, drained or reserved)",
    "InvalidQOS": "its QOS is not valid",
    "InvalidAccount": "its account is not valid",
    "QOSMaxWallDurationPerJobLimit": "its time limit is over its QOS's",
    "AssocMaxWallDurationPerJobLimit": "its time limit is over its association's",
}


def _report_pending(job_id: str, reason: str) -> None:
    """A pending job's (new) reason: logged; said at a terminal; a reason
    with which the job may never start is said always."""
    _log.info("slurm job %s: pending (%s)", job_id, reason)
    stuck = _STUCK_REASONS.get(reason.split(",")[0].strip("()"))
    try:
        if stuck:
            _log.notice(f"slurm job {job_id} is pending with reason {reason}: {stuck}; it may "
                        f"never start as submitted (Ctrl-C cancels it; change the options)")
        elif sys.stderr.isatty():
            _log.notice(f"slurm job {job_id} is pending ({reason})")
    except (OSError, ValueError, AttributeError):
        pass


def _statuses(stage: str, tasks: List[int]) -> Dict[int, tuple]:
    from ..._core.restore import parse_status
    found = {}
    for task in tasks:
        try:
            with open(os.path.join(stage, f"status.{task}"), encoding="utf-8", errors="replace") as f:
                verdict = parse_status(f.read())
        except OSError:
            continue
        if verdict is not None:
            found[task] = verdict
    return found


def _stderr_tail(record, lines: int = 15) -> str:
    path = record.path("StdErr") if record is not None else None
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4000))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return " | ".join(line for line in text.strip().splitlines()[-lines:] if line.strip())


def await_handoff(job_id: str, stage: str, tasks: List[int], poll: float = 0.005) -> None:
    """Wait (as long as the job is pending) until a task reports the program
    rebuilt; raise TeleportError with Slurm's or the task's reason otherwise."""
    last_check = 0.0
    last_reason = None
    while True:
        for task, (ok, reason) in sorted(_statuses(stage, tasks).items()):
            if ok:
                _log.debug("slurm job %s: task %d rebuilt the program; handing over", job_id, task)
                return
            raise TeleportError(f"slurm job {job_id}: the job could not resume the program: {reason}")
        now = time.monotonic()
        if now - last_check >= 0.3:
            last_check = now
            records = _cli.show_job(job_id)
            if records is None:
                raise TeleportError(f"slurm job {job_id} disappeared before it resumed the program")
            pending = [r for r in records if r.state == "PENDING"]
            if pending and pending[0].reason != last_reason:
                last_reason = pending[0].reason
                if last_reason not in ("None", ""):
                    _report_pending(job_id, last_reason)
            if records and all(r.done for r in records) and not _statuses(stage, tasks):
                rec = records[0]
                detail = _stderr_tail(rec)
                raise TeleportError(
                    f"slurm job {job_id} ended ({rec.state}, exit code {rec.fields.get('ExitCode', '?')}, "
                    f"reason {rec.reason}) before it resumed the program"
                    + (f"; its stderr: {detail}" if detail else "")
                    + " (check the python and setup options for the job's nodes)")
        time.sleep(poll)
        poll = min(poll * 1.5, 0.1)     # the job usually starts within a second
