"""Slurm's own commands (``sbatch``, ``scontrol``, ``scancel``), as the
``slurm`` backend and :mod:`pyteleport.slurm` use them.

Every release of Slurm has these commands, with the options used here, so
they are the one tested path.  ``pyslurm`` would be a faster seam for the
same calls; :func:`api_choice` says which one is used and why (only the
commands are implemented so far: PyPI has no pyslurm for most Slurm
releases in use).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

from ..._errors import TeleportError

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
            "PREEMPTED", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED"}
_KEY = re.compile(r" (?=[A-Za-z][A-Za-z0-9/:_]*=)")


class SlurmUnavailable(TeleportError):
    """A command of Slurm's failed or did not answer in time: slurmctld is
    busy or restarting ("Socket timed out", "Unable to contact slurm
    controller"); asking again later may succeed."""


class JobRecord:
    """One line of ``scontrol show job -o``: a job, or one task of an array."""

    # a plain class: dataclasses (and the inspect it imports) would delay sbatch

    def __init__(self, fields: Dict[str, str]):
        self.fields = fields

    @property
    def state(self) -> str:
        return self.fields.get("JobState", "UNKNOWN")

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def task(self) -> Optional[str]:
        value = self.fields.get("ArrayTaskId")
        return value if value and value.isdigit() else None

    @property
    def reason(self) -> str:
        return self.fields.get("Reason", "None")

    @property
    def exit_code(self) -> int:
        """The exit code as a shell reports it (128 + signal when killed)."""
        code, _, sig = self.fields.get("ExitCode", "0:0").partition(":")
        if sig and sig != "0":
            return 128 + int(sig)
        return int(code or 0)

    def path(self, key: str) -> Optional[str]:
        value = self.fields.get(key)
        return value if value and value != "(null)" else None


def api_choice() -> str:
    """``"commands"``; logs why pyslurm is not used when it is installed."""
    try:
        import pyslurm  # noqa: F401
    except ImportError:
        return "commands"
    from ... import _log
    _log.debug("slurm backend: pyslurm %s is installed, but only Slurm's commands are "
               "implemented; using them", getattr(pyslurm, "__version__", "?"))
    return "commands"


def _run(cmd: Sequence[str], stdin: Optional[str] = None, timeout: float = 60,
         env: Optional[Dict[str, str]] = None) -> Tuple[int, str, str]:
    exe = shutil.which(cmd[0])
    if exe is None:
        raise TeleportError(f"slurm backend: {cmd[0]!r} not found on PATH: run this on a Slurm "
                            "login node, or put Slurm's commands on PATH")
    try:
        proc = subprocess.run([exe, *cmd[1:]], input=stdin, capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise SlurmUnavailable(f"slurm backend: {' '.join(cmd[:2])} did not answer within "
                            f"{timeout:g} s (is slurmctld up?)") from None
    return proc.returncode, proc.stdout, proc.stderr


def _message(err: str) -> str:
    return " ".join(line.strip() for line in err.strip().splitlines()) or "no message"


def submit(args: List[str], script: str, env: Optional[Dict[str, str]] = None) -> str:
    """``sbatch --parsable ARGS`` with ``script`` on stdin; the job id."""
    code, out, err = _run(["sbatch", "--parsable", *args], stdin=script, env=env)
    if code != 0:
        raise TeleportError(f"slurm backend: sbatch refused the job: {_message(err)} "
                            f"(sbatch options: {' '.join(args)})")
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise TeleportError(f"slurm backend: unexpected answer from sbatch --parsable: {out.strip()!r}")
    return job_id


def show_job(job_id: str) -> Optional[List[JobRecord]]:
    """The job's records (one per array task), or None if Slurm no longer knows it."""
    code, out, err = _run(["scontrol", "show", "job", "-o", job_id])
    if code != 0:
        if "Invalid job id" in err:
            return None
        raise SlurmUnavailable(f"slurm backend: scontrol show job {job_id}: {_message(err)}")
    records = []
    for line in out.splitlines():
        if not line.strip():
            continue
        fields = {}
        for token in _KEY.split(line.strip()):
            key, _, value = token.partition("=")
            fields[key] = value
        records.append(JobRecord(fields))
    return records


def accounting_exit_codes(job_id: str) -> Optional[Dict[str, Tuple[str, int]]]:
    """``sacct``'s ``{job id: (state, exit code)}`` for the job (every task of
    an array), or None when accounting is off or knows nothing of the job."""
    try:
        code, out, _ = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobIDRaw,State,ExitCode"],
                            timeout=30)
    except TeleportError:
        return None
    if code != 0:
        return None
    found = {}
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0]:
            record = JobRecord({"JobState": parts[1].split()[0] if parts[1] else "UNKNOWN",
                                "ExitCode": parts[2]})
            found[parts[0]] = (record.state, record.exit_code)
    return found or None


def cancel(job_id: str, signal: Optional[str] = None, batch: bool = False) -> None:
    """``scancel`` (errors are ignored: the job may be gone already)."""
    cmd = ["scancel"]
    if signal:
        cmd.append(f"--signal={signal}")
    if batch:
        cmd.append("--batch")
    try:
        _run([*cmd, job_id], timeout=30)
    except TeleportError:
        pass


def requeue(job_id: str) -> None:
    """``scontrol requeue JOB``: the job goes back to the queue and runs its batch script again."""
    code, _, err = _run(["scontrol", "requeue", job_id])
    if code != 0:
        raise TeleportError(f"cannot requeue job {job_id}: {_message(err)}")
