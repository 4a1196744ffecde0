"""Signals the waiting source receives, passed on to the job (``wait=True``).

SIGTERM, SIGUSR1 and SIGUSR2 sent to the source go to the program in the job
(``scancel --batch --signal=SIG``: the batch script ``exec``\\ s the
program, so the batch shell is the program), so that the program's own
handlers run there, as they would have here; the source goes on following
the job and exits with its exit code.  Ctrl-C (SIGINT) is not forwarded: it
cancels the job; SIGHUP (the login session dropped) is not either: the
source stops following and the job goes on (see :class:`._target.SlurmTarget`).
"""
from __future__ import annotations

import signal
from typing import Callable, Iterable

from ... import _log
from . import _cli

FORWARDED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2")
                  if hasattr(signal, name))


class forward_signals:
    """While active, forward :data:`FORWARDED` signals to the jobs
    ``job_ids()`` names (the jobs the source follows now)."""

    def __init__(self, job_ids: Callable[[], Iterable[str]]):
        self.job_ids = job_ids
        self.previous = {}

    def _forward(self, signum, frame) -> None:
        name = signal.Signals(signum).name[3:]
        for job in self.job_ids():
            _log.info("forwarding SIG%s to slurm job %s", name, job)
            _cli.cancel(job, signal=name, batch=True)

    def __enter__(self):
        for signum in FORWARDED:
            try:
                self.previous[signum] = signal.signal(signum, self._forward)
            except (ValueError, OSError):      # not the main thread
                pass
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous.clear()
