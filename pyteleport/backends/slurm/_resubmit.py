"""A new job that continues a snapshot, for when Slurm refuses to requeue
the current one (``--no-requeue``, ``JobRequeue=0``, a site's policy).

The new job asks for what the current one has (``scontrol show job``:
partition, time limit, nodes, tasks, CPUs, memory, GRES, account, QOS,
constraint, reservation, name, output files in append mode, working
directory, requeue setting), plus the warning signal, and runs the restore
entry on the stage directory.  Options Slurm does not report back
(``--signal``'s grace among them) come from :func:`pyteleport.slurm.protect`.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Dict, List, Optional

from ..._errors import TeleportError
from . import _cli
from ._stage import job_script

_NULL = {"", "(null)", "N/A", "None"}


def _value(fields: Dict[str, str], key: str) -> Optional[str]:
    value = fields.get(key)
    return None if value is None or value in _NULL else value


def continuation_args(fields: Dict[str, str], signal: str, grace: int) -> List[str]:
    """sbatch options for a job like the one ``fields`` describes."""
    args: List[str] = []
    simple = {"Partition": "partition", "Account": "account", "QOS": "qos",
              "Features": "constraint", "Reservation": "reservation", "JobName": "job-name",
              "WorkDir": "chdir"}
    for key, option in simple.items():
        value = _value(fields, key)
        if value is not None:
            args.append(f"--{option}={value}")
    limit = _value(fields, "TimeLimit")
    if limit and re.fullmatch(r"[\d:-]+", limit):        # not UNLIMITED / Partition_Limit
        args.append(f"--time={limit}")
    for key, option in (("NumNodes", "nodes"), ("NumTasks", "ntasks"), ("CPUs/Task", "cpus-per-task")):
        value = _value(fields, key)
        if value and re.fullmatch(r"\d+(-\d+)?", value):
            args.append(f"--{option}={value}")
    for key, option in (("MinMemoryNode", "mem"), ("MinMemoryCPU", "mem-per-cpu")):
        value = _value(fields, key)
        if value and value not in ("0", "0M"):
            args.append(f"--{option}={value}")
    gres = _value(fields, "TresPerNode")
    if gres:
        args.append("--gres=" + ",".join(g[5:] if g.startswith("gres:") else g
                                         for g in gres.split(",")))
    out, err = _value(fields, "StdOut"), _value(fields, "StdErr")
    if out:
        args.append(f"--output={out}")
    if err and err != out:
        args.append(f"--error={err}")
    args.append("--open-mode=append")            # the program's output goes on in the same files
    args.append("--requeue" if fields.get("Requeue") == "1" else "--no-requeue")
    args.append(f"--signal=B:{signal}@{grace}")
    return args


def entry_args(signal: str, max_restarts: int, grace: int, restarts: int,
               task: Optional[str], detached: bool) -> List[str]:
    """The restore entry's options (see :mod:`._entry`)."""
    args = ["--protect", signal, str(max_restarts), "--grace", str(grace), "--restarts", str(restarts)]
    if task is not None:
        args += ["--task", task]
    if detached:
        args.append("--detached")
    return args


def resubmit(stage: str, signal: str, max_restarts: int, grace: int, restarts: int,
             task: Optional[str], detached: bool) -> str:
    """Submit the job that resumes ``stage``'s snapshot; its id."""
    job_id = os.environ.get("SLURM_JOB_ID", "")
    records = _cli.show_job(job_id) if job_id else None
    if not records:
        raise TeleportError(f"cannot resubmit: Slurm does not describe job {job_id or '(none)'}")
    args = continuation_args(records[0].fields, signal, grace)
    script = job_script(sys.executable, stage, None,
                        entry_args(signal, max_restarts, grace, restarts, task, detached), protect=signal)
    # the new job gets Slurm's own SLURM_* variables, not this job's
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    return _cli.submit(args, script, env=env)
