"""The processes a launcher started, so that none outlives an abandoned
launch (a ``setup`` command still running when the handoff times out).

Linux only (``/proc``); elsewhere nothing is found and nothing is done.
"""
from __future__ import annotations

import os
import signal
from typing import List, Optional, Tuple


def _stat(pid: int) -> Optional[Tuple[int, int]]:
    """``(parent pid, start time)`` of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def descendants(root: int) -> List[Tuple[int, int]]:
    """``(pid, start time)`` of every process below ``root``, now."""
    try:
        pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    stats = {pid: s for pid, s in ((pid, _stat(pid)) for pid in pids) if s is not None}
    found, frontier = [], {root}
    while frontier:
        children = {pid for pid, (parent, _) in stats.items() if parent in frontier}
        found += [(pid, stats[pid][1]) for pid in children]
        frontier = children
    return found


def kill_survivors(processes: List[Tuple[int, int]]) -> None:
    """SIGKILL those of ``processes`` still running (the same process: its
    pid not reused, judged by its start time)."""
    for pid, started in processes:
        stat = _stat(pid)
        if stat is not None and stat[1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
