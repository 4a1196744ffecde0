"""Following a submitted job: its state, and its output files as they grow."""
from __future__ import annotations

import sys
import time
from typing import Dict, List, Optional

from . import _slurm_cli
from ._slurm_cli import JobRecord


class Tail:
    """Copies what is appended to a file to one of our own streams."""

    def __init__(self, path: str, out):
        self.path = path
        self.out = out
        self.pos = 0

    def pump(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return
        if data:
            self.pos += len(data)
            self.out.write(data)
            self.out.flush()


class Follower:
    """Polls ``scontrol show job`` and copies every task's stdout and stderr
    files to this process's own stdout and stderr."""

    def __init__(self, job_id: str, poll: float = 0.1):
        self.job_id = job_id
        self.poll = poll
        self.tails: Dict[str, Tail] = {}
        self.records: List[JobRecord] = []
        self.last_state: Optional[str] = None

    def _streams(self):
        out = getattr(sys.stdout, "buffer", None) or sys.__stdout__.buffer
        err = getattr(sys.stderr, "buffer", None) or sys.__stderr__.buffer
        return out, err

    def refresh(self) -> Optional[List[JobRecord]]:
        records = _slurm_cli.show_job(self.job_id)
        if records is None:
            return None
        self.records = records
        out, err = self._streams()
        for rec in records:
            if rec.state == "PENDING":
                continue
            stdout, stderr = rec.path("StdOut"), rec.path("StdErr")
            if stdout and stdout not in self.tails:
                self.tails[stdout] = Tail(stdout, out)
            if stderr and stderr not in self.tails:
                self.tails[stderr] = Tail(stderr, err)
        state = ",".join(sorted({r.state for r in records}))
        if state != self.last_state:
            from .. import _log
            _log.info("slurm job %s: %s", self.job_id, state)
            self.last_state = state
        return records

    def pump(self) -> None:
        for tail in self.tails.values():
            tail.pump()

    def run(self) -> int:
        """Follow until every task has ended; the highest exit code of the tasks."""
        last = 0.0
        interval = 0.3
        started = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last >= interval:
                last = now
                records = self.refresh()
                if records is None or (records and all(r.done for r in records)):
                    self.pump()
                    if records is None:
                        return 0
                    return max(r.exit_code for r in records)
                # a long job: ask slurmctld less often
                interval = 0.3 if now - started < 60 else 2.0
            self.pump()
            time.sleep(self.poll)
