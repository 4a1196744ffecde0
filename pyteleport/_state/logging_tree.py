"""``logging``: every configured logger (level, handlers, filters,
propagation, disabled), and the module's settings (``logging.disable``,
level names, ``raiseExceptions``...).

Handlers travel by value with their lock held as often as here (a move
from inside ``emit()`` returns into ``release()``; see the pickler's rule
for RLocks): a ``FileHandler`` is flushed here and reopened on the
target in append mode at the same path, a ``StreamHandler`` on a standard
stream writes to the target's.
"""
import logging

_FLAGS = ("raiseExceptions", "logThreads", "logProcesses", "logMultiprocessing", "logAsyncioTasks")
_DEFAULT_LEVEL_NAMES = {50: "CRITICAL", 40: "ERROR", 30: "WARNING", 20: "INFO", 10: "DEBUG", 0: "NOTSET"}


def save():
    root = logging.root
    loggers = []
    items = [("", root)] + list(root.manager.loggerDict.items())
    for name, logger in items:
        if not isinstance(logger, logging.Logger):
            continue    # a placeholder for a logger not created yet
        default = logging.WARNING if logger is root else logging.NOTSET
        if logger.level == default and logger.propagate and not logger.disabled \
                and not logger.handlers and not logger.filters:
            continue
        loggers.append((name, logger.level, logger.propagate, logger.disabled,
                        list(logger.handlers), list(logger.filters)))
    state = {"loggers": loggers, "disable": root.manager.disable,
             "flags": {k: getattr(logging, k) for k in _FLAGS if hasattr(logging, k)},
             "levels": {k: v for k, v in logging._levelToName.items()
                        if _DEFAULT_LEVEL_NAMES.get(k) != v}}
    factory = logging.getLogRecordFactory()
    if factory is not logging.LogRecord:
        state["record_factory"] = factory
    return state


def restore(state):
    for level, name in state["levels"].items():
        logging.addLevelName(level, name)
    for name, level, propagate, disabled, handlers, filters in state["loggers"]:
        logger = logging.getLogger(name) if name else logging.root
        logger.setLevel(level)
        logger.propagate = propagate
        logger.disabled = disabled
        logger.handlers[:] = handlers
        logger.filters[:] = filters
    for key, value in state["flags"].items():
        setattr(logging, key, value)
    logging.disable(state["disable"])
    if "record_factory" in state:
        logging.setLogRecordFactory(state["record_factory"])


def reduce_handler(handler):
    """A handler's reduction: its attributes; an open ``FileHandler``
    stream is flushed and reopened on the target."""
    state = dict(handler.__dict__)
    reopen = None
    stream = state.get("stream")
    if isinstance(handler, logging.FileHandler) and stream is not None:
        if not stream.closed:
            stream.flush()
            # opened for appending: appends; else it goes on where it was (a
            # checkpoint resumed twice writes the same file twice)
            reopen = None if "a" in handler.mode else stream.tell()
            reopen = ("append", reopen)
        state["stream"] = None
    return new_handler, (type(handler),), (state, reopen), None, None, set_handler_state


def new_handler(cls):
    return cls.__new__(cls)


def set_handler_state(handler, state):
    attrs, reopen = state
    handler.__dict__.update(attrs)
    if getattr(handler, "lock", None) is None:
        handler.createLock()
    logging._addHandlerRef(handler)     # flushed and closed by logging.shutdown at exit
    if handler.get_name():
        handler.set_name(handler.get_name())
    if reopen is not None:
        _, position = reopen
        if position is not None:
            import os
            try:
                if os.path.getsize(handler.baseFilename) > position:
                    os.truncate(handler.baseFilename, position)   # written after the move
            except OSError:
                pass    # not there: appending creates it
        handler.mode = "ab" if "b" in handler.mode else "a"   # never truncate what it wrote
        handler.stream = handler._open()
        statstream = getattr(handler, "_statstream", None)   # WatchedFileHandler
        if statstream is not None:
            statstream()
