"""The ``slurm`` backend: the program continues as a Slurm batch job.

A batch script that ``exec``\\ s Python on the job-side entry
(:mod:`._slurm_entry`) is submitted with ``sbatch`` (:mod:`._slurm_cli`) while
the program is packed; the payload is then staged in a directory both the
submit host and the job's nodes see (:mod:`._slurm_stage`), where the entry
waits for it.  With ``wait=True`` the source follows the job (and any job
that continues it) and copies its output files to its own streams
(:mod:`._slurm_follow`), passing signals on to it (:mod:`._slurm_signals`).
Time limits and preemption are survived with :mod:`pyteleport.slurm`
(requeue, or a new job: :mod:`._slurm_resubmit`).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, List, Mapping, Optional, Union

from .. import _log
from .._errors import TeleportError
from . import Backend, Target, _slurm_cli
from . import _slurm_options as opts
from ._slurm_resubmit import entry_args as protect_args
from ._slurm_stage import job_script, make_stage, remove_stage, stage_payload


class DetachedTarget(Target):
    """``wait=False``: the job runs on by itself; the source exits 0."""

    def wait(self) -> int:
        return 0


class SlurmTarget(Target):
    """A job whose program was rebuilt: follow it to its end."""

    def __init__(self, job_id: str, stage: str):
        self.job_id = job_id
        self.stage = stage

    def wait(self) -> int:
        from ._slurm_follow import Follower          # (not imported before sbatch)
        from ._slurm_signals import forward_signals
        follower = Follower(self.job_id, self.stage)
        with forward_signals(follower.job_ids):
            while True:
                try:
                    code = follower.run()
                    break
                except KeyboardInterrupt:
                    jobs = follower.job_ids()
                    if jobs and _confirm_cancel(",".join(jobs)):
                        for job in jobs:
                            _slurm_cli.cancel(job)
        _finish_stage(self.stage)
        return code


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


def _finish_stage(stage: str) -> None:
    """Remove the stage, unless a snapshot is left in it (the job ended
    without finishing the program)."""
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


def _announce(job_id: str, wait: bool) -> None:
    """The job id: logged, and on stderr when the source is left (``wait=False``,
    like sbatch's own line) or stderr is a terminal."""
    _log.info("submitted batch job %s", job_id)
    try:
        if not wait or sys.stderr.isatty():
            sys.stderr.write(f"pyteleport: submitted batch job {job_id}\n")
            sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


class SlurmBackend(Backend):
    """Continue the program as a Slurm batch job.

    Options with the names and meaning of ``sbatch``'s long options:
    ``partition``, ``time``, ``nodes``, ``ntasks``, ``cpus_per_task``, ``mem``,
    ``gres``, ``account``, ``qos``, ``constraint``, ``job_name``, ``output``,
    ``error``, plus ``sbatch_options`` (any other, ``{"exclusive": True}``).
    Each falls back on ``PYTELEPORT_SLURM_<NAME>``.

    :param setup: shell lines the batch script runs before Python (``module load ...``).
    :param python: interpreter in the job (default: this one).
    :param stage_dir: where the payload waits for the job (default ``./.pyteleport``);
        both sides must see it.
    :param wait: follow the job, stream its output, pass SIGTERM, SIGHUP,
        SIGUSR1 and SIGUSR2 on to it and exit with its exit code (default: when
        stdout is a terminal); ``False``: exit 0 once submitted.
    :param array: run the program on in this many array tasks (or an sbatch
        array spec); :func:`pyteleport.task_index` tells them apart.
    :param requeue: survive time limits and preemption (``--requeue``,
        ``--signal=B:<signal>@<grace>``, see :mod:`pyteleport.slurm`).
    :param signal: the warning signal (default ``USR2``).
    :param grace: seconds before the limit it is sent (default 180).
    :param max_restarts: requeues (or new jobs, when Slurm refuses to
        requeue) at most this often (default 10).
    :param mpi: start ``ntasks`` MPI ranks in the job, each resuming the
        program (:func:`pyteleport.task_index` is the rank).
    :param mpi_launcher: the command that starts them in the allocation
        (default ``["srun", "--mpi=pmi2"]``; ``PYTELEPORT_SLURM_MPI_LAUNCHER``).
    """

    name = "slurm"

    def __init__(self, partition: Optional[str] = None, time: Optional[str] = None,
                 nodes: Any = None, ntasks: Any = None, cpus_per_task: Any = None,
                 mem: Optional[str] = None, gres: Optional[str] = None,
                 account: Optional[str] = None, qos: Optional[str] = None,
                 constraint: Optional[str] = None, job_name: Optional[str] = None,
                 output: Optional[str] = None, error: Optional[str] = None,
                 sbatch_options: Optional[Mapping[str, Any]] = None,
                 setup: Optional[str] = None, python: Optional[str] = None,
                 stage_dir: Optional[str] = None, wait: Optional[bool] = None,
                 array: Union[int, str, None] = None, requeue: bool = False,
                 signal: Optional[str] = None, grace: Optional[int] = None,
                 max_restarts: Optional[int] = None, mpi: bool = False,
                 mpi_launcher: Union[str, List[str], None] = None):
        named = dict(partition=partition, time=time, nodes=nodes, ntasks=ntasks,
                     cpus_per_task=cpus_per_task, mem=mem, gres=gres, account=account, qos=qos,
                     constraint=constraint, job_name=job_name, output=output, error=error)
        self.args = opts.sbatch_args(named, dict(sbatch_options or {}))
        self.setup = setup if setup is not None else opts.env_default("setup")
        self.python = python or opts.env_default("python") or sys.executable
        self.stage_dir = stage_dir or opts.env_default("stage_dir")
        wait = opts.parse_bool("wait", wait if wait is not None else opts.env_default("wait"))
        if wait is None:
            try:
                wait = sys.stdout.isatty()
            except (AttributeError, ValueError):
                wait = False
        self.wait = wait
        self.tasks: List[int] = [0]
        if array is not None:
            spec, self.tasks = opts.parse_array(array)
            self.args.append(f"--array={spec}")
        self.entry_args: List[str] = []
        if requeue:
            sig = (signal or opts.env_default("signal") or opts.DEFAULT_SIGNAL).upper()
            sig = sig[3:] if sig.startswith("SIG") else sig
            grace = int(grace if grace is not None else opts.env_default("grace") or opts.DEFAULT_GRACE)
            restarts = int(max_restarts if max_restarts is not None
                           else opts.env_default("max_restarts") or opts.DEFAULT_MAX_RESTARTS)
            self.args += ["--requeue", f"--signal=B:{sig}@{grace}", "--open-mode=append"]
            self.entry_args = protect_args(sig, restarts, grace, 0, None, False)
        job_files = "%A_%a" if array is not None else "%j"
        if self.wait and not opts.given(self.args, "output") and not opts.given(self.args, "error"):
            # separate files, so that the job's stderr goes to the source's stderr
            self.args += [f"--output=slurm-{job_files}.out", f"--error=slurm-{job_files}.err"]
        if not opts.given(self.args, "job-name"):
            self.args.append(f"--job-name={os.path.basename(sys.argv[0] or 'python') or 'python'}")
        _slurm_cli.api_choice()
        self._submitted: Optional[tuple] = None     # (job id, stage) once prepare() submitted
        # MPI ranks in the job (see _slurm_mpi)
        self.mpi = bool(mpi)
        self.mpi_launcher = mpi_launcher
        if self.mpi:
            from . import _slurm_mpi
            _slurm_mpi.check(self, array)

    def rank_stage(self) -> str:
        return make_stage(self.stage_dir)

    def spawn_ranks(self, directory: str, n: int) -> Target:
        from . import _slurm_mpi
        return _slurm_mpi.spawn_ranks(self, directory, n)

    def prepare(self) -> None:
        """Submit the job before the program is packed: Slurm schedules and
        starts it meanwhile, and its entry waits for the payload.  (MPI ranks
        are started by a launcher that needs the payload staged first.)"""
        if self.mpi:
            return
        stage = make_stage(self.stage_dir)
        try:
            entry_args = self.entry_args + ([] if self.wait else ["--detached"])
            script = job_script(self.python, stage, self.setup, entry_args)
            job_id = _slurm_cli.submit(self.args, script)
        except BaseException:
            remove_stage(stage)
            raise
        _log.debug("slurm backend: job %s, stage %s, sbatch %s", job_id, stage, " ".join(self.args))
        self._submitted = (job_id, stage)

    def cancel(self) -> None:
        """The program could not be packed: cancel the job, remove the stage."""
        if self._submitted is not None:
            job_id, stage = self._submitted
            self._submitted = None
            _log.info("slurm backend: cancelling job %s (the program was not moved)", job_id)
            _slurm_cli.cancel(job_id)
            remove_stage(stage)

    def spawn(self, payload) -> Target:
        if self.mpi:
            from . import _slurm_mpi
            return _slurm_mpi.spawn_fanout(self, payload)
        if self._submitted is None:
            self.prepare()
        job_id, stage = self._submitted
        try:
            stage_payload(stage, payload, self.tasks)
        except BaseException:
            self.cancel()
            raise
        self._submitted = None
        _announce(job_id, self.wait)
        if not self.wait:
            return DetachedTarget()
        try:
            _await_handoff(job_id, stage, self.tasks)
        except BaseException:
            _slurm_cli.cancel(job_id)
            remove_stage(stage)
            raise
        return SlurmTarget(job_id, stage)


def _statuses(stage: str, tasks: List[int]) -> Dict[int, tuple]:
    from .._restore import parse_status
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


def _await_handoff(job_id: str, stage: str, tasks: List[int], poll: float = 0.005) -> None:
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
            records = _slurm_cli.show_job(job_id)
            if records is None:
                raise TeleportError(f"slurm job {job_id} disappeared before it resumed the program")
            pending = [r for r in records if r.state == "PENDING"]
            if pending and pending[0].reason != last_reason:
                last_reason = pending[0].reason
                _log.info("slurm job %s: pending (%s)", job_id, last_reason)
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
