"""Surviving a termination signal anywhere: :func:`protect`.

Kubernetes and cloud spot/preemptible machines send SIGTERM some seconds
before they kill a program; PBS, LSF, SGE and HTCondor send a signal before
the walltime; ``timeout -s TERM`` does the same by hand.  On that signal the
program is snapshotted at the very instruction it was interrupted at (the
path Slurm's protection takes), the snapshot is written atomically to a
file, and the process exits with :data:`EXIT_SAVED` (or carries on, with
``then="continue"``).  ``pyteleport resume FILE`` continues the program,
protected again; with ``resume=True``, running the same command again does.
"""
from __future__ import annotations

import os
import signal as _signal
import sys
import time

from ._errors import TeleportError
from ._exit import end_process, flush_std
from ._log import notice

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Union

# the exit code of a process that saved itself at the signal: sysexits.h's
# EX_TEMPFAIL ("a temporary failure; the user is invited to retry")
EXIT_SAVED = 75

_ENV_PATH = "PYTELEPORT_PROTECT_PATH"
_ENV_SIGNAL = "PYTELEPORT_PROTECT_SIGNAL"
_ENV_EXIT_CODE = "PYTELEPORT_PROTECT_EXIT_CODE"
_THEN = ("exit", "continue")

# a snapshot refused at the signal (a thread still running, say) is tried
# again this often, for at most `retry` seconds
RETRY_SECONDS = 1.0

# set by protect(); module globals, so that a snapshot refers to the handler by name
_config: dict = {}
_interrupt = None   # pyteleport._core.interrupt, imported by _arm()


def protect(signal: Union[str, int, None] = None, path: Union[str, os.PathLike, None] = None, *,
            then: str = "exit", exit_code: Optional[int] = None, resume: bool = False,
            retry: float = 10.0, sync: Optional[bool] = None) -> None:
    """Save the running program to a file when ``signal`` arrives.

    ``signal`` (default ``PYTELEPORT_PROTECT_SIGNAL``, else ``"TERM"``): a
    name (``"TERM"``, ``"SIGUSR1"``) or a number.  When it arrives, the
    program is snapshotted at the instruction it was interrupted at and
    written atomically (mode 0600, signed) to ``path`` (default
    ``PYTELEPORT_PROTECT_PATH``, else ``<script name>.pyteleport`` in the
    current directory); then, with ``then="exit"``, the process exits with
    ``exit_code`` (default ``PYTELEPORT_PROTECT_EXIT_CODE``, else
    :data:`EXIT_SAVED`, 75); with ``then="continue"`` it carries on.
    ``pyteleport resume PATH`` continues the program from that instruction,
    protected the same way.

    ``resume=True``: if ``path`` holds a snapshot of this same command (same
    arguments), this call continues it instead of returning (the process keeps
    its pid); once the program ends, the file is removed, so that running
    the command again starts afresh.  A snapshot the program refuses (a thread
    still running...) is tried again every second for ``retry`` seconds, then
    the program carries on (and is killed by whoever sent the signal).
    ``sync`` as for :func:`pyteleport.checkpoint`.
    """
    from ._payload.container import sync_option
    what = "pyteleport.protect()"
    from ._core.interrupt import signal_number
    signum = signal_number(signal if signal is not None else os.environ.get(_ENV_SIGNAL) or "TERM", what)
    if then not in _THEN:
        raise TeleportError(f"{what}: then={then!r}; use one of {', '.join(map(repr, _THEN))}")
    code = _exit_code(exit_code, what)
    path = os.path.abspath(os.fspath(path) if path is not None else
                           os.environ.get(_ENV_PATH) or _default_path())
    durable = sync_option(sync, what)
    if not isinstance(retry, (int, float)) or retry < 0:
        raise TeleportError(f"{what}: retry must be a number of seconds >= 0, not {retry!r}")
    if resume and os.path.lexists(path):
        _resume_here(path, what)
    _arm(dict(signum=signum, path=path, then=then, exit_code=code, resume=resume,
              retry=float(retry), sync=durable))


def _exit_code(value, what: str) -> int:
    name = "exit_code"
    if value is None:
        value = os.environ.get(_ENV_EXIT_CODE) or EXIT_SAVED
        name = _ENV_EXIT_CODE
    try:
        code = int(value)
    except (TypeError, ValueError):
        code = -1
    if not 0 <= code <= 255:
        raise TeleportError(f"{what}: {name} must be an exit code from 0 to 255, not {value!r}")
    return code


def _default_path() -> str:
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    stem = os.path.splitext(script)[0] or "python"
    return os.path.join(os.getcwd(), stem + ".pyteleport")


def _arm(config: dict) -> None:
    """Install the handler; a snapshot carries ``config`` and arms it again
    in the resumed process (see :func:`__pyteleport_state__`)."""
    global _interrupt
    # what the handler needs is loaded now: a signal may land while the
    # program is importing, when our own imports would fail
    from ._core import interrupt as _interrupt
    from ._payload import container  # noqa: F401 (used by _save)
    fresh = not _config
    _config.clear()
    _config.update(config, busy=False, first_failure=None)
    _signal.signal(config["signum"], _on_signal)
    if config["resume"] and fresh:
        import atexit
        atexit.register(_remove_when_done)


def __pyteleport_state__() -> Optional[dict]:
    """What moves with the program (module state protocol): the protection,
    armed again where the program continues."""
    if not _config:
        return None
    return {k: _config[k] for k in ("signum", "path", "then", "exit_code", "resume", "retry", "sync")}


def __pyteleport_restore__(config: dict) -> None:
    _arm(config)


def _remove_when_done() -> None:
    """``resume=True``: the program ended (not by saving itself): its
    snapshot is out of date."""
    if _config.get("resume"):
        try:
            os.unlink(_config["path"])
        except OSError:
            pass


def _resume_here(path: str, what: str) -> None:
    """Replace this process (same pid: the scheduler's signals still reach it)
    by ``pyteleport resume path``, if the snapshot there is this command's."""
    from ._payload.container import PayloadError, inspect
    from ._payload.private import UnsafeFile, open_file
    try:
        with open_file(path, "snapshot", owner=True) as f:
            _, ctx, _ = inspect(f, signed=True)
    except (OSError, PayloadError, UnsafeFile) as e:
        raise TeleportError(f"{what}: cannot resume {path}: {getattr(e, 'strerror', None) or e}; "
                            "remove it to start the program afresh") from None
    if ctx.get("argv") != sys.argv:
        raise TeleportError(f"{what}: {path} is the snapshot of another command "
                            f"({ctx.get('argv')!r}, this is {sys.argv!r}): remove it, or "
                            "give this run its own path=")
    from .backends import entry_code
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execv(sys.executable, [sys.executable, "-c", entry_code("pyteleport.cli:main"), "resume", path])


def _on_signal(signum, frame) -> None:
    # imports nothing: see _arm()
    if _config.get("busy"):
        return
    _config["busy"] = True
    try:
        _interrupt.at_next_instruction(frame, _save, _failed)
    except Exception as e:   # a failure here must not land in the program
        _failed(e)


def _save(payload) -> None:
    from ._payload.container import write_file
    c = _config
    path = c["path"]
    try:
        write_file(payload, path, f"snapshot {os.path.basename(path)}", c["sync"])
    except (OSError, TeleportError) as e:     # TeleportError: no usable signing key
        _failed(TeleportError(f"cannot write the snapshot {path}: {getattr(e, 'strerror', None) or e}"))
        return
    name = _signal.Signals(c["signum"]).name
    c["busy"] = False
    c["first_failure"] = None
    if c["then"] == "continue":
        notice(f"saved the program to {path} at {name}; it carries on")
        return
    again = "run the same command again, or: " if c["resume"] else ""
    notice(f"saved the program to {path} at {name}; to continue it, {again}pyteleport resume {path}")
    flush_std()
    end_process(c["exit_code"])


def _failed(exc: BaseException) -> None:
    c = _config
    reason = str(exc) if isinstance(exc, TeleportError) else f"{type(exc).__name__}: {exc}"
    first = c["first_failure"] = c["first_failure"] or time.monotonic()
    if time.monotonic() - first + RETRY_SECONDS <= c["retry"] \
            and _interrupt.again_after(RETRY_SECONDS, _on_retry):
        notice(f"cannot save the program at the signal: {reason}; trying again in {RETRY_SECONDS:g} s")
    else:
        notice(f"cannot save the program at the signal: {reason}; it carries on")
        c["first_failure"] = None
    c["busy"] = False


def _on_retry(frame) -> None:
    _on_signal(_config["signum"], frame)
