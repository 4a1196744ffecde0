"""The ``slurm`` backend's options: defaults from ``PYTELEPORT_SLURM_*``
variables, and their translation into ``sbatch`` long options."""
from __future__ import annotations

import os
import re
from typing import Any, List, Mapping, Optional, Tuple

from ..._errors import TeleportError

# keyword -> sbatch long option; same names and meaning as sbatch's
SBATCH = {
    "partition": "partition", "time": "time", "nodes": "nodes", "ntasks": "ntasks",
    "cpus_per_task": "cpus-per-task", "mem": "mem", "gres": "gres", "account": "account",
    "qos": "qos", "constraint": "constraint", "job_name": "job-name", "output": "output",
    "error": "error",
}
# options of pyteleport itself that also take a PYTELEPORT_SLURM_* default
OWN = ("setup", "python", "stage_dir", "wait", "signal", "grace", "max_restarts")
DEFAULT_SIGNAL = "USR2"
# room for a long C call the handler must wait for and for writing the
# snapshot before the kill (the warning itself comes up to 30 s early)
DEFAULT_GRACE = 180
# how often slurmctld checks time limits (PERIODIC_TIMEOUT); a warning due
# before the next check is sent at this one
LIMIT_CHECK_SECONDS = 30
DEFAULT_MAX_RESTARTS = 10


def env_default(name: str, environ: Mapping[str, str] = os.environ) -> Optional[str]:
    value = environ.get("PYTELEPORT_SLURM_" + name.upper())
    return value if value else None


def parse_bool(name: str, value: Any) -> Optional[bool]:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise TeleportError(f"slurm backend: {name}={value!r}: expected true or false")


def parse_array(spec: Any) -> Tuple[str, List[int]]:
    """``array`` as sbatch takes it, and the task indices it names.

    An int ``N`` means N tasks, indices 0 .. N-1; a string is sbatch's own
    syntax (``"0-15:4"``, ``"1,3,5"``, ``"0-99%10"``)."""
    if isinstance(spec, bool):
        raise TeleportError("slurm backend: array must be a number of tasks or an sbatch array spec")
    if isinstance(spec, int):
        if spec < 1:
            raise TeleportError(f"slurm backend: array={spec}: at least one task")
        return f"0-{spec - 1}", list(range(spec))
    text = str(spec).strip()
    body = text.split("%", 1)[0]
    indices: List[int] = []
    for part in body.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not m:
            raise TeleportError(f"slurm backend: array={spec!r}: not an sbatch array spec "
                                "(e.g. 8, \"0-7\", \"1,3,5\", \"0-15:4%2\")")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        step = int(m.group(3)) if m.group(3) else 1
        indices.extend(range(lo, hi + 1, step))
    return text, sorted(set(indices))


def _flag(option: str, value: Any) -> Optional[str]:
    if value is None or value is False:
        return None
    if value is True:
        return f"--{option}"
    return f"--{option}={value}"


def sbatch_args(named: Mapping[str, Any], extra: Mapping[str, Any],
                environ: Mapping[str, str] = os.environ) -> List[str]:
    """sbatch's long options for the named options (falling back on
    ``PYTELEPORT_SLURM_<NAME>``) and ``sbatch_options`` (``{"qos": "high",
    "exclusive": True}``; underscores become dashes)."""
    args: List[str] = []
    given = set()
    for key, option in SBATCH.items():
        value = named.get(key)
        if value is None:
            value = env_default(key, environ)
        flag = _flag(option, value)
        if flag:
            args.append(flag)
            given.add(option)
    for key, value in extra.items():
        option = str(key).lstrip("-").replace("_", "-")
        if option in given:
            raise TeleportError(f"slurm backend: {option!r} given both as an option and in sbatch_options")
        flag = _flag(option, value)
        if flag:
            args.append(flag)
    return args


TIME_FORMATS = ("minutes ('90')", "'MM:SS'", "'HH:MM:SS'", "'D-HH'", "'D-HH:MM'", "'D-HH:MM:SS'",
                "'UNLIMITED'")
_TIME = re.compile(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?")


def time_limit(value: Any) -> Optional[int]:
    """Seconds of a time limit as sbatch reads ``--time`` (None: unlimited);
    TeleportError naming the formats for anything else."""
    text = str(value).strip()
    if text.upper() in ("UNLIMITED", "INFINITE", "-1"):
        return None
    m = _TIME.fullmatch(text)
    if m is None:
        raise TeleportError(f"slurm backend: time={value!r} is not a Slurm time limit: "
                            f"use {', '.join(TIME_FORMATS)}")
    days, a, b, c = (int(x) if x is not None else None for x in m.groups())
    if days is not None:    # D-HH[:MM[:SS]]
        return ((days * 24 + a) * 60 + (b or 0)) * 60 + (c or 0)
    if c is not None:       # HH:MM:SS
        return (a * 60 + b) * 60 + c
    if b is not None:       # MM:SS
        return a * 60 + b
    return a * 60           # minutes


def value_of(args: List[str], option: str) -> Optional[str]:
    """The value of sbatch's ``--option=value`` among ``args`` (the last one)."""
    found = None
    for a in args:
        if a.startswith(f"--{option}="):
            found = a.split("=", 1)[1]
    return found


def output_files(args: List[str], job_id: str) -> str:
    """Where the job's stdout and stderr go, for the user: sbatch's
    ``--output``/``--error`` patterns with the job's id (an array's tasks: ``*``)."""
    def resolve(pattern: str) -> str:
        return pattern.replace("%j", job_id).replace("%A", job_id).replace("%a", "*")
    out, err = value_of(args, "output"), value_of(args, "error")
    names = [resolve(p) for p in (out or "slurm-%j.out", err) if p]
    return " and ".join(dict.fromkeys(names))


def given(args: List[str], option: str) -> bool:
    return any(a == f"--{option}" or a.startswith(f"--{option}=") for a in args)
