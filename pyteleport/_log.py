"""Logging without importing :mod:`logging`.

Records go to the ``pyteleport`` logger whenever the program has imported
logging (only then can it have configured a handler for them), and cost
nothing otherwise: importing logging would add milliseconds to every move.
"""
import sys


def logger():
    """The ``pyteleport`` logger, or None when logging is not in use."""
    logging = sys.modules.get("logging")
    return logging.getLogger("pyteleport") if logging is not None else None


def debug_enabled() -> bool:
    log = logger()
    return log is not None and log.isEnabledFor(10)   # logging.DEBUG


def debug(msg: str, *args) -> None:
    log = logger()
    if log is not None:
        log.debug(msg, *args)


def info(msg: str, *args) -> None:
    log = logger()
    if log is not None:
        log.info(msg, *args)


def error(msg: str, *args) -> None:
    log = logger()
    if log is not None:
        log.error(msg, *args)


def notice(message: str) -> None:
    """One line on stderr that the user must see whether or not the program
    configured logging (a program saved at a signal, a job requeued)."""
    try:
        sys.stderr.write(f"pyteleport: {message}\n")
        sys.stderr.flush()
    except (AttributeError, ValueError, OSError):   # no stderr, or closed
        pass
