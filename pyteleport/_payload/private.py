"""Opening the files a payload is read from, in the style of OpenSSH's
StrictModes: this user's own regular files only, not writable by others.

Root passes every permission check, so the checks are by owner and mode
bits, never by ``access()``.  Files are opened with ``O_NOFOLLOW`` (a planted
symbolic link is refused, not followed) and ``O_NONBLOCK`` (a FIFO does not
block the open; it is then refused as not a regular file).
"""
import os

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_S_IFMT, _S_IFREG, _S_IFDIR = 0o170000, 0o100000, 0o040000


class UnsafeFile(Exception):
    """The file or folder must not be used; the message is one line for the user."""


def problem(st, path: str, what: str, loose: int = 0o022) -> "str | None":
    """Why ``st`` (of ``path``) must not be used, or None: another owner, or
    mode bits in ``loose`` (writable by group or others, by default)."""
    me = os.geteuid()
    if st.st_uid != me:
        return (f"{what} {path} belongs to uid {st.st_uid}, not to you (uid {me}): refusing to use "
                f"it (if you trust it: `chown {me} {path}`)")
    if st.st_mode & loose:
        fix = "go-rwx" if loose & 0o044 else "go-w"
        return (f"{what} {path} has mode {st.st_mode & 0o7777:04o} (others could change it): "
                f"refusing to use it (if it is yours: `chmod {fix} {path}`)")
    return None


def open_fd(path: str, what: str, flags: int = os.O_RDONLY, mode: int = 0o600,
            loose: int = 0o022, owner: bool = True) -> int:
    """``os.open(path, flags | O_NOFOLLOW | O_NONBLOCK)``, refusing (UnsafeFile)
    a symbolic link, anything but a regular file and (``owner``) another
    user's file or a loose one.  OSError for the other failures (missing
    file, ...)."""
    try:
        fd = os.open(path, flags | NOFOLLOW | CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as e:
        if e.errno == 40 or (NOFOLLOW and os.path.islink(path)):     # ELOOP
            raise UnsafeFile(f"{what} {path} is a symbolic link: refusing to follow it") from None
        raise
    try:
        st = os.fstat(fd)
        if st.st_mode & _S_IFMT != _S_IFREG:
            kind = "a directory" if st.st_mode & _S_IFMT == _S_IFDIR else "not a regular file"
            raise UnsafeFile(f"{what} {path} is {kind}")
        reason = problem(st, path, what, loose) if owner else None
        if reason is not None:
            raise UnsafeFile(reason)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_file(path: str, what: str = "payload", owner: bool = True):
    """A buffered binary reader on ``path`` once :func:`open_fd` accepts it."""
    return open(open_fd(path, what, owner=owner), "rb")


def check_dir(path: str, what: str, loose: int = 0o077, sticky_ok: bool = False) -> None:
    """Refuse (UnsafeFile) a folder that is a symbolic link, not a folder,
    another user's, or has mode bits in ``loose`` (a world-writable sticky
    folder such as /tmp with ``sticky_ok``).  OSError if it is missing."""
    st = os.lstat(path)
    if st.st_mode & _S_IFMT != _S_IFDIR:
        kind = "a symbolic link" if st.st_mode & _S_IFMT == 0o120000 else "not a directory"
        raise UnsafeFile(f"{what} {path} is {kind}: refusing to use it")
    if sticky_ok and st.st_mode & 0o1000:
        return
    reason = problem(st, path, what, loose)
    if reason is not None:
        raise UnsafeFile(reason)
