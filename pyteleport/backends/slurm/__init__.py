"""The ``slurm`` backend: the program continues as a Slurm batch job.

A batch script that ``exec``\\ s Python on the job-side entry
(:mod:`._entry`) is submitted with ``sbatch`` (:mod:`._cli`) while
the program is packed; the payload is then staged in a directory both the
submit host and the job's nodes see (:mod:`._stage`), where the entry
waits for it.  With ``wait=True`` the source follows the job (and any job
that continues it) and copies its output files to its own streams
(:mod:`._target`, :mod:`._follow`), passing signals on to it (:mod:`._signals`).
Time limits and preemption are survived with :mod:`pyteleport.slurm`
(requeue, or a new job: :mod:`._resubmit`); MPI ranks in the job: :mod:`._mpi`.
"""
from __future__ import annotations

import os
import sys
from typing import Any, List, Mapping, Optional, Union

from ... import _log
from ..._errors import TeleportError
from .. import Backend, Target
from . import _cli
from . import _options as opts
from ._resubmit import entry_args as protect_args
from ._reaper import Reaper
from ._stage import Lease, job_script, make_stage, removable_base, remove_stage, stage_payload
from ._target import hand_over


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
        limit_text = opts.value_of(self.args, "time")
        limit = opts.time_limit(limit_text) if limit_text is not None else None
        self.setup = setup if setup is not None else opts.env_default("setup")
        self.python = python or opts.env_default("python") or sys.executable
        self.stage_dir = stage_dir or opts.env_default("stage_dir")
        wait = opts.parse_bool("wait", wait if wait is not None else opts.env_default("wait"))
        self.wait_why = ""      # why the job is not followed, when wait was not given
        if wait is None:
            try:
                wait = sys.stdout.isatty()
            except (AttributeError, ValueError):
                wait = False
            self.wait_why = "" if wait else ": stdout is not a terminal; wait=True follows it"
        self.wait = wait
        self.tasks: List[int] = [0]
        if array is not None:
            spec, self.tasks = opts.parse_array(array)
            self.args.append(f"--array={spec}")
        self.entry_args: List[str] = []
        self.signal: Optional[str] = None     # the warning signal of a protected job
        if requeue:
            sig = (signal or opts.env_default("signal") or opts.DEFAULT_SIGNAL).upper()
            sig = sig[3:] if sig.startswith("SIG") else sig
            grace = int(grace if grace is not None else opts.env_default("grace") or opts.DEFAULT_GRACE)
            if limit is not None and grace >= limit:
                # the warning would come as the job starts: requeued every ~30 s, never going on
                raise TeleportError(
                    f"slurm backend: grace={grace} s is not shorter than the job's time limit "
                    f"({limit_text}, {limit} s): the warning would come at once and the job be "
                    f"requeued again and again; give a grace well under the limit (e.g. "
                    f"grace={max(limit // 4, 1)}) or a longer time")
            if limit is not None and limit - grace <= opts.LIMIT_CHECK_SECONDS:
                # slurmctld sends a warning due before its next limit check at once: at the
                # job's first check, which may come before the batch step exists on the
                # node; slurmd then drops the signal, and it is never sent again
                _log.notice(
                    f"slurm backend: with time={limit_text} and grace={grace} s, Slurm sends the "
                    f"warning at its first time-limit check (every {opts.LIMIT_CHECK_SECONDS} s), "
                    f"which can come before the job's script starts and then is lost; keep grace "
                    f"under the time limit minus {opts.LIMIT_CHECK_SECONDS} s")
            restarts = int(max_restarts if max_restarts is not None
                           else opts.env_default("max_restarts") or opts.DEFAULT_MAX_RESTARTS)
            self.args += ["--requeue", f"--signal=B:{sig}@{grace}", "--open-mode=append"]
            self.entry_args = protect_args(sig, restarts, grace, 0, None, False)
            self.signal = sig
        job_files = "%A_%a" if array is not None else "%j"
        if not opts.given(self.args, "output") and not opts.given(self.args, "error"):
            # separate files, so that the job's stderr goes to the source's stderr;
            # the same whether the job is followed or not
            self.args += [f"--output=slurm-{job_files}.out", f"--error=slurm-{job_files}.err"]
        if not opts.given(self.args, "job-name"):
            self.args.append(f"--job-name={os.path.basename(sys.argv[0] or 'python') or 'python'}")
        _cli.api_choice()
        self._submitted: Optional[tuple] = None     # (job id, stage) once prepare() submitted
        # MPI ranks in the job (see _mpi)
        self.mpi = bool(mpi)
        self.mpi_launcher = mpi_launcher
        if self.mpi:
            from . import _mpi
            _mpi.check(self, array)

    def rank_stage(self) -> str:
        return make_stage(self.stage_dir)

    def spawn_ranks(self, directory: str, n: int) -> Target:
        from . import _mpi
        return _mpi.spawn_ranks(self, directory, n)

    def prepare(self) -> None:
        """Submit the job before the program is packed: Slurm schedules and
        starts it meanwhile, and its entry waits for the payload.  (MPI ranks
        are started by a launcher that needs the payload staged first.)"""
        if self.mpi:
            return
        stage = make_stage(self.stage_dir)
        try:
            # while the job waits for the payload: it gives up if this process dies
            self._lease = Lease(stage)
            entry_args = self.entry_args + ([] if self.wait else ["--detached"])
            script = job_script(self.python, stage, self.setup, entry_args, protect=self.signal)
            job_id = _cli.submit(self.args, script)
        except BaseException:
            self._stop_lease()
            remove_stage(stage)
            raise
        try:
            # if this process dies before the payload is staged: the job is cancelled
            self._reaper = Reaper(job_id, stage, removable_base(stage))
        except BaseException:
            self._stop_lease()
            _cli.cancel(job_id)
            remove_stage(stage)
            raise
        _log.debug("slurm backend: job %s, stage %s, sbatch %s", job_id, stage, " ".join(self.args))
        self._submitted = (job_id, stage)

    def _stop_lease(self) -> None:
        lease, self._lease = getattr(self, "_lease", None), None
        if lease is not None:
            lease.stop()
        reaper, self._reaper = getattr(self, "_reaper", None), None
        if reaper is not None:
            reaper.release()

    def cancel(self) -> None:
        """The program could not be packed: cancel the job, remove the stage."""
        self._stop_lease()
        if self._submitted is not None:
            job_id, stage = self._submitted
            self._submitted = None
            _log.info("slurm backend: cancelling job %s (the program was not moved)", job_id)
            _cli.cancel(job_id)
            remove_stage(stage)

    def spawn(self, payload) -> Target:
        if self.mpi:
            from . import _mpi
            return _mpi.spawn_fanout(self, payload)
        if self._submitted is None:
            self.prepare()
        job_id, stage = self._submitted
        try:
            stage_payload(stage, payload, self.tasks)
        except BaseException:
            self.cancel()
            raise
        self._stop_lease()
        self._submitted = None
        return hand_over(job_id, stage, self.tasks, self.args, self.wait, self.wait_why)
