"""The process context of a program moved by the ``bash`` or ``ssh`` backend.

The ``local`` backend gives the resumed program the very context it had
(working directory, environment, ``sys.path``).  A program started through a
shell on another machine must instead keep what that shell set up (``module
load``, ``conda activate``, its own interpreter's site-packages), so the
context is adapted to what the target reported in its *hello*:

* working directory: the target's (the source's own if it exists there, else
  the login directory, unless ``setup`` or ``cwd`` chose one);
* environment: the target's, plus the variables the program set or removed
  while it ran (compared with the environment it was started with), plus the
  backend's ``env``;
* ``sys.path``: the program's entries in their order, its interpreter's own
  entries (standard library, site-packages) replaced by the target
  interpreter's, and the shipped folders placed before the entries they
  stand for.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Mapping, Optional

from ..._core.paths import is_system_path

log = logging.getLogger("pyteleport")


def initial_environ() -> Optional[Dict[str, str]]:
    """The environment this process was started with (Linux), or None."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep and key:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return env


def environ_changes(current: Mapping[str, str]) -> Dict[str, Optional[str]]:
    """Variables the program set (name -> value) or removed (name -> None)."""
    start = initial_environ()
    if start is None:
        log.debug("cannot read /proc/self/environ: the environment changes the program "
                  "made are not carried to the target")
        return {}
    changes: Dict[str, Optional[str]] = {}
    for key, value in current.items():
        if start.get(key) != value:
            changes[key] = value
    for key in start:
        if key not in current:
            changes[key] = None
    return changes


def target_path(source_path: List[str], target_system: List[str], front: List[str],
                shipped_roots: Mapping[str, str]) -> List[str]:
    """The program's ``sys.path`` for the target (see the module docstring)."""
    out: List[str] = list(front)
    inserted = False
    for entry in source_path:
        if not isinstance(entry, str):
            out.append(entry)
            continue
        if is_system_path(entry):
            if not inserted:
                out.extend(target_system)
                inserted = True
            continue
        if entry in shipped_roots:
            out.append(shipped_roots[entry])
        out.append(entry)
    if not inserted:
        out.extend(target_system)
    seen = set()
    result = []
    for entry in out:
        key = entry if isinstance(entry, str) else id(entry)
        if key not in seen:
            seen.add(key)
            result.append(entry)
    return result


def retarget(ctx: dict, hello: dict, *, front: List[str], shipped_roots: Mapping[str, str],
             env: Mapping[str, str]) -> dict:
    """A copy of the payload context ``ctx`` adapted to the target of ``hello``."""
    ctx = dict(ctx)
    environ = dict(hello["environ"])
    for key, value in environ_changes(ctx["environ"]).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    environ.update(env)
    if hello["cwd"] != ctx["cwd"]:
        log.info("the program continues in %s on %s (it ran in %s here)",
                 hello["cwd"], hello["host"], ctx["cwd"])
    ctx["cwd"] = hello["cwd"]
    ctx["environ"] = environ
    ctx["path"] = target_path(list(ctx["path"]), list(hello["path"]), front, shipped_roots)
    return ctx
