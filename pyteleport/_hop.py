"""The link of a hop of a chain of local moves to the chain's first source
(see ``backends/_adoption.py``): the write end of its pipe, which the
restore entry takes from ``--hop-fd``.  Standard library only, and nothing
else imported: it is on every hop's way to running the program."""
import os

_fd = None
_owner = None     # the pid it was given to: a child the program forks is no hop


def take(fd: int) -> None:
    """In a target started with ``--hop-fd``: keep the pipe (not inherited
    by the program's own child processes)."""
    global _fd, _owner
    os.set_inheritable(fd, False)
    _fd, _owner = fd, os.getpid()


def inherited():
    """The first source's pipe, if this process is a hop of a chain."""
    return _fd if _owner == os.getpid() else None


def announce(pid: int) -> bool:
    """In a hop whose target confirmed: tell the first source to wait for
    ``pid`` from now on.  False if it cannot be told (it is gone)."""
    fd = inherited()
    if fd is None:
        return False
    try:
        return os.write(fd, b"%d\n" % pid) > 0
    except OSError:       # EPIPE: the first source is gone
        return False
