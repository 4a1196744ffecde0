"""Following a submitted job: its state, and its output files as they grow.

The source follows the job it submitted and, when Slurm refused to requeue
it at a time limit, the job that continues its program (``STAGE/next.<jobid>``).
A job's outcome is, in this order: the exit status its program wrote into the
stage (``STAGE/exit.<jobid>``, which needs no accounting), Slurm's
``ExitCode`` while ``scontrol`` still knows the job, ``sacct`` when
accounting is on.  A ``scontrol`` that fails or does not answer (slurmctld
busy or restarting) is asked again: the job goes on meanwhile, and only
:attr:`Follower.UNAVAILABLE_FOR` seconds without an answer end the following.
"""
from __future__ import annotations

import sys
import time
from typing import Dict, List, Optional

from ... import _log
from . import _cli
from ._cli import JobRecord, SlurmUnavailable
from ._stage import read_note


class Tail:
    """Copies what is appended to a file to one of our own streams."""

    def __init__(self, path: str, out):
        self.path = path
        self.out = out
        self.pos = 0
        self.held = b""     # the start of a line not copied yet

    def pump(self, whole_lines: bool = False) -> bool:
        """Copy what is new; whether there was anything.  ``whole_lines``
        (several files copied to one stream, e.g. array tasks): copy only
        up to the last line end (``\\n``, or ``\\r`` of a progress bar), so
        that lines of two tasks never mix."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return False
        grew = bool(data)
        if grew:
            self.pos += len(data)
            data, self.held = self.held + data, b""
            if whole_lines:
                end = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
                data, self.held = data[:end], data[end:]
            self._write(data)
        return grew

    def finish(self) -> None:
        """Copy a last line that has no line end."""
        data, self.held = self.held, b""
        self._write(data)

    def _write(self, data: bytes) -> None:
        if data and self.out is not None:
            try:
                self.out.write(data)
                self.out.flush()
            except (OSError, ValueError):
                # our stream is gone (closed pipe, hung-up terminal): the
                # job goes on, its output stays in its file
                self.out = None
                _log.info("slurm backend: cannot copy %s any more", self.path)


def _record_id(record: JobRecord, fallback: str) -> str:
    return record.fields.get("JobId") or fallback


class Follower:
    """Polls ``scontrol show job`` for the followed jobs and copies every
    task's stdout and stderr files to this process's own stdout and stderr."""

    # output files are read often right after they grew, less when quiet
    POLL_MIN, POLL_MAX = 0.01, 0.25
    # how long Slurm may fail to answer before the source gives up following
    UNAVAILABLE_FOR = 600.0

    def __init__(self, job_id: str, stage: Optional[str] = None):
        self.stage = stage
        self.active: List[str] = [job_id]          # jobs still followed
        self.seen: Dict[str, List[JobRecord]] = {}  # their last records
        self.codes: Dict[str, int] = {}            # exit code per ended job (or array task)
        self.tails: Dict[str, Tail] = {}
        self.last_state: Dict[str, str] = {}
        self.unavailable_since: Optional[float] = None

    def _streams(self):
        out = getattr(sys.stdout, "buffer", None) or sys.__stdout__.buffer
        err = getattr(sys.stderr, "buffer", None) or sys.__stderr__.buffer
        return out, err

    def _watch_files(self, records: List[JobRecord]) -> None:
        out, err = self._streams()
        for rec in records:
            if rec.state == "PENDING":
                continue
            stdout, stderr = rec.path("StdOut"), rec.path("StdErr")
            if stdout and stdout not in self.tails:
                self.tails[stdout] = Tail(stdout, out)
            if stderr and stderr not in self.tails:
                self.tails[stderr] = Tail(stderr, err)

    def _log_state(self, job: str, records: List[JobRecord]) -> None:
        state = ",".join(sorted({r.state for r in records}))
        if state != self.last_state.get(job):
            _log.info("slurm job %s: %s", job, state)
            self.last_state[job] = state

    def refresh(self) -> None:
        """Ask Slurm about every followed job; retire those that ended."""
        for job in list(self.active):
            try:
                records = _cli.show_job(job)
            except SlurmUnavailable as e:
                self._unavailable(e)
                return
            if self.unavailable_since is not None:
                _log.info("slurm answers again")
                self.unavailable_since = None
            if records is None:                       # Slurm forgot it (MinJobAge)
                self.active.remove(job)
                self._forgotten(job)
                continue
            self.seen[job] = records
            self._watch_files(records)
            self._log_state(job, records)
            if records and all(r.done for r in records):
                self.active.remove(job)
                for rec in records:
                    self._ended(_record_id(rec, job), rec.exit_code)

    def _unavailable(self, error: SlurmUnavailable) -> None:
        """Slurm did not tell the job's state: ask again at the next refresh,
        for at most UNAVAILABLE_FOR seconds."""
        now = time.monotonic()
        if self.unavailable_since is None:
            self.unavailable_since = now
            _log.info("%s; asking again", error)
        elif now - self.unavailable_since > self.UNAVAILABLE_FOR:
            raise SlurmUnavailable(f"{error} (no answer for {self.UNAVAILABLE_FOR:g} s)")

    def _ended(self, job: str, slurm_code: Optional[int]) -> None:
        """One job (or array task) ended: follow its successor, or keep its code."""
        successor = read_note(self.stage, "next", job)
        if successor:
            _log.info("slurm job %s: continued in job %s", job, successor)
            self.active.append(successor)
            return
        noted = read_note(self.stage, "exit", job)
        if noted is not None and noted.isdigit():
            self.codes[job] = int(noted)
        elif slurm_code is not None:
            self.codes[job] = slurm_code
        else:
            import logging     # an error the user must see, even without logging set up
            logging.getLogger("pyteleport").error(
                "slurm job %s ended, but its exit status is unknown: Slurm no longer lists it (it "
                "ended more than MinJobAge ago), accounting (sacct) is off or does not know it, "
                "and its program left no exit status in %s (it was killed, or the stage is "
                "gone); see the job's output files; exiting with 1",
                job, self.stage or "the stage directory")
            self.codes[job] = 1

    def _forgotten(self, job: str) -> None:
        ids = [_record_id(r, job) for r in self.seen.get(job, [])] or [job]
        unnoted = [i for i in ids if not read_note(self.stage, "next", i)
                   and not read_note(self.stage, "exit", i)]
        accounted = (_cli.accounting_exit_codes(job) if unnoted else None) or {}
        for i in ids:
            self._ended(i, accounted[i][1] if i in accounted else None)

    def pump(self) -> bool:
        grew = False
        tails = list(self.tails.values())
        users: Dict[int, int] = {}      # tails per stream, counted once (arrays have many)
        for tail in tails:
            users[id(tail.out)] = users.get(id(tail.out), 0) + 1
        for tail in tails:
            grew = tail.pump(whole_lines=users[id(tail.out)] > 1) or grew
        return grew

    def job_ids(self) -> List[str]:
        """The jobs followed now."""
        return list(self.active)

    def run(self) -> int:
        """Follow until every job has ended; the highest exit code of them."""
        last = 0.0
        started = time.monotonic()
        poll = self.POLL_MIN
        while True:
            now = time.monotonic()
            # a long job: ask slurmctld less often
            if now - last >= (0.3 if now - started < 60 else 2.0):
                last = now
                self.refresh()
                if not self.active:
                    self.pump()
                    for tail in self.tails.values():
                        tail.finish()
                    return max(self.codes.values(), default=0)
            poll = self.POLL_MIN if self.pump() else min(poll * 1.5, self.POLL_MAX)
            time.sleep(poll)
