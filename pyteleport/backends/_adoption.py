"""A chain of local moves keeps one waiting process, not one per hop.

A source that moved its program with the ``local`` backend stays to relay
its target's exit code and the signals sent to it.  Without this module,
each further move of the program leaves one more such process (each some
tens of MiB) waiting on the next.  Instead:

* the first source (the *waiter*) becomes a child subreaper
  (``PR_SET_CHILD_SUBREAPER``, Linux) and hands its target the write end of
  a pipe (``--hop-fd``); it is a subreaper before the payload is even sent,
  so before the target can move again;
* a target that moves again with the ``local`` backend passes the same pipe
  to its own target and, once that one confirmed, writes its pid into the
  pipe and exits at once instead of waiting;
* orphaned by that exit, the new target becomes the waiter's child; the
  waiter, told its pid, goes on waiting for it (and forwards signals to it),
  and ends with the exit code of the last hop.

Where any step cannot be done (not Linux, no ``prctl``, the waiter gone), a
hop waits for its target as before: never wrong, only less frugal.  A
notebook kernel moving a cell never becomes a waiter (it keeps running, and
its other children are its own to reap).
"""
from __future__ import annotations

import os
import select
import sys

from ._wakeup import Wakeup, _pidfd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Set

HOP_ARG = "--hop-fd"     # read by the restore entry into pyteleport._hop
_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        # _ctypes alone: ctypes' own module costs a first source milliseconds more
        import _ctypes
        prctl = _ctypes.dlsym(_ctypes.dlopen(None), "prctl")
        return _ctypes.call_function(prctl, (_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (ImportError, OSError, AttributeError):
        return False


def wait_chain(child, hop_r: int, forwarding) -> int:
    """In the waiter: the exit status of the last hop of the chain that
    starts with ``child``, as ``proc.wait()`` gives it.  ``forwarding``'s
    ``proc`` follows the chain, so that signals reach the current hop."""
    from ._spawn import Child
    os.set_blocking(hop_r, False)
    announced = []
    pending = b""
    # at end of file (every hop closed it: a program closing all its
    # descriptors) the pipe is readable for good: no longer watched then
    hops = [hop_r]
    try:
        with Wakeup() as wake:
            while True:
                pidfd = _pidfd(child.pid)
                try:
                    while child.poll() is None:
                        watched = [wake.fd] + hops + ([pidfd] if pidfd is not None else [])
                        select.select(watched, [], [], None if pidfd is not None else 0.05)
                        wake.drain()
                        pending = _read_announcements(hop_r, pending, announced, hops)
                        _reap_strays({child.pid, *announced})
                finally:
                    if pidfd is not None:
                        os.close(pidfd)
                pending = _read_announcements(hop_r, pending, announced, hops)
                if not announced:
                    return child.returncode
                # the hop moved on: its target is our child now (orphaned by its exit)
                child = Child(announced.pop(0))
                forwarding.proc = child
    finally:
        os.close(hop_r)


def _read_announcements(fd: int, pending: bytes, out: list, watched: list) -> bytes:
    """Pids announced so far appended to ``out``; ``fd`` leaves ``watched``
    at end of file."""
    try:
        while True:
            chunk = os.read(fd, 4096)
            if not chunk:
                if fd in watched:
                    watched.remove(fd)
                break
            pending += chunk
    except BlockingIOError:
        pass
    *lines, pending = pending.split(b"\n")
    out += [int(line) for line in lines if line.strip().isdigit()]
    return pending


def _reap_strays(keep: Set[int]) -> None:
    """Reap the orphans a subreaper adopts (the program's own daemons),
    never the hops it waits for."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except (ChildProcessError, OSError):
            return
        if info is None or info.si_pid in keep:
            return
        try:
            os.waitpid(info.si_pid, 0)
        except ChildProcessError:
            return
