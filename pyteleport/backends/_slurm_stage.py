"""The stage: a private directory both the submit host and the job see.

Layout of one move (``<stage_dir>/job-<pid>-<random>/``, mode 0700)::

    payload.<task>   the program, one hard link per array task (0 otherwise),
                     mode 0600; each task unlinks its own once it has read it
    status.<task>    the task's verdict (the restore entry's status line)
    ckpt.<task>      the newest snapshot taken at a time-limit or preemption
                     signal; a restarted job resumes it instead of the payload
    next.<jobid>     the job that continues job <jobid>'s program when Slurm
                     refused to requeue it (written before <jobid> ends)
    exit.<jobid>     the program's exit status in job <jobid>, written as it
                     exits: the job's outcome once Slurm has forgotten the job
"""
from __future__ import annotations

import os
import shlex
import shutil
from typing import Iterable, List, Optional

from .._errors import TeleportError


def default_stage_dir() -> str:
    return os.path.join(os.getcwd(), ".pyteleport")


def task_tag(environ=os.environ) -> str:
    return environ.get("SLURM_ARRAY_TASK_ID") or "0"


def make_stage(stage_dir: Optional[str]) -> str:
    """A new private directory under ``stage_dir`` (created 0700 if missing)."""
    base = os.path.abspath(os.path.expanduser(stage_dir or default_stage_dir()))
    try:
        os.makedirs(base, mode=0o700, exist_ok=True)
        path = os.path.join(base, f"job-{os.getpid()}-{os.urandom(4).hex()}")
        os.mkdir(path, 0o700)
    except OSError as e:
        raise TeleportError(f"slurm backend: cannot create the stage directory under {base!r}: "
                            f"{e.strerror} (set stage_dir to a directory the job's nodes also see)") from None
    return path


def write_payload(path: str, payload) -> None:
    """Write ``payload`` to ``path`` atomically, mode 0600 (raises OSError)."""
    from .._payload import write_file
    write_file(payload, path, f"stage {os.path.basename(path)}")


def stage_payload(stage: str, payload, tasks: Iterable[int]) -> None:
    """``payload.<task>`` for every task: one file, hard-linked."""
    tasks = list(tasks)
    first = os.path.join(stage, f"payload.{tasks[0]}")
    try:
        write_payload(first, payload)
        for task in tasks[1:]:
            os.link(first, os.path.join(stage, f"payload.{task}"))
    except OSError as e:
        raise TeleportError(f"slurm backend: cannot write the payload into {stage!r}: {e}") from None


def note_path(stage: str, kind: str, job_id: str) -> str:
    """``STAGE/next.<jobid>`` or ``STAGE/exit.<jobid>``."""
    return os.path.join(stage, f"{kind}.{job_id}")


def write_note(stage: str, kind: str, job_id: str, text: str) -> None:
    """Write a one-line note atomically (raises OSError)."""
    path = note_path(stage, kind, job_id)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_note(stage: Optional[str], kind: str, job_id: str) -> Optional[str]:
    if not stage:
        return None
    try:
        with open(note_path(stage, kind, job_id), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def remove_stage(stage: str) -> None:
    shutil.rmtree(stage, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(stage))    # the shared stage_dir, once empty
    except OSError:
        pass


ENTRY = "pyteleport.backends._slurm_entry:main"


def entry_command(python: str, stage: str, entry_args: Iterable[str] = (), entry: str = ENTRY) -> List[str]:
    """The command line of a job-side entry (``module:function``; default the
    restore entry, :mod:`._slurm_entry`)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    module, function = entry.split(":")
    boot = f"import sys; sys.path.insert(0, {root!r}); from {module} import {function}; {function}()"
    return [python, "-c", boot, stage, *entry_args]


def job_script(python: str, stage: str, setup: Optional[str], entry_args: Iterable[str] = (),
               launcher: Iterable[str] = (), entry: str = ENTRY) -> str:
    """The batch script: ``setup``, then ``exec`` Python on the restore entry
    (``exec``, so that Slurm's ``--signal=B:...`` reaches the program), or on
    ``entry`` through ``launcher`` (MPI ranks: ``srun``)."""
    lines = ["#!/bin/sh", "# pyteleport: resume a moved program (see pyteleport/backends/slurm.py)"]
    if setup:
        lines += ["set -e", setup.rstrip("\n"), "set +e"]
    cmd = [*launcher, *entry_command(python, stage, entry_args, entry)]
    lines.append("exec " + " ".join(shlex.quote(c) for c in cmd))
    return "\n".join(lines) + "\n"
