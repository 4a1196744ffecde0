"""Cancels a submitted job whose source dies before it staged the payload.

The job is submitted before the program is packed (it waits in the queue
meanwhile); a source killed in between (``kill -9``, the OOM killer) runs no
code of its own, and the job would keep its place in the queue, then its
allocation, for nothing.  So ``prepare()`` starts a small shell beside it
that holds the read end of a pipe: the source writes ``ok`` once the
payload is staged (or once it cancelled the job itself); end of file
without it means the source died, and the shell cancels the job and
removes the stage.  No thread (the program is about to be packed), no
Python start-up (the shell costs about a millisecond), and nothing left
running: the shell ends either way.
"""
from __future__ import annotations

import os
import subprocess

# $1 job id, $2 stage, $3 the stage's base folder to remove once empty (or "")
_SCRIPT = ('read -r word; [ "$word" = ok ] && exit 0; '
           'scancel "$1" 2>/dev/null; rm -rf -- "$2"; [ -n "$3" ] && rmdir -- "$3" 2>/dev/null; exit 0')


class Reaper:
    """The watcher of one submitted job (see the module's docstring)."""

    def __init__(self, job_id: str, stage: str, removable_base: str = ""):
        read_end, self._write_end = os.pipe()     # both close on exec: only the shell's stdin survives
        try:
            self._proc = subprocess.Popen(
                ["/bin/sh", "-c", _SCRIPT, "pyteleport-reaper", job_id, stage, removable_base],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)   # a ^C meant for the program does not reach it
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    def release(self) -> None:
        """The job no longer needs watching: the shell ends without a word."""
        if self._write_end is None:
            return
        try:
            os.write(self._write_end, b"ok\n")
        except OSError:
            pass
        os.close(self._write_end)
        self._write_end = None
        self._proc.wait()
