"""The stage: a private directory both the submit host and the job see.

Layout of one move (``<stage_dir>/job-<pid>-<random>/``, mode 0700)::

    payload.<task>   the program, one hard link per array task (0 otherwise),
                     mode 0600; each task unlinks its own once it has read it
    status.<task>    the task's verdict (the restore entry's status line)
    ckpt.<task>      the newest snapshot taken at a time-limit or preemption
                     signal; a restarted job resumes it instead of the payload
"""
from __future__ import annotations

import os
import secrets
import shlex
import shutil
from typing import Iterable, Optional

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
        path = os.path.join(base, f"job-{os.getpid()}-{secrets.token_hex(4)}")
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


def remove_stage(stage: str) -> None:
    shutil.rmtree(stage, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(stage))    # the shared stage_dir, once empty
    except OSError:
        pass


def job_script(python: str, stage: str, setup: Optional[str], entry_args: Iterable[str] = (),
               launcher: Iterable[str] = (), entry: str = "pyteleport.backends._slurm_entry:main") -> str:
    """The batch script: ``setup``, then ``exec`` Python on the restore entry
    (``exec``, so that Slurm's ``--signal=B:...`` reaches the program), or on
    ``entry`` through ``launcher`` (MPI ranks: ``srun``)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    module, function = entry.split(":")
    boot = f"import sys; sys.path.insert(0, {root!r}); from {module} import {function}; {function}()"
    lines = ["#!/bin/sh", "# pyteleport: resume a moved program (see pyteleport/backends/slurm.py)"]
    if setup:
        lines += ["set -e", setup.rstrip("\n"), "set +e"]
    cmd = [*launcher, python, "-c", boot, stage, *entry_args]
    lines.append("exec " + " ".join(shlex.quote(c) for c in cmd))
    return "\n".join(lines) + "\n"
