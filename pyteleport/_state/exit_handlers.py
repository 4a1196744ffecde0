"""``atexit``: the handlers the program's own code registered (after
``import pyteleport``) run at the end of the process the program ends in:
the target, not the source.

The interpreter gives no way to list registered handlers, so importing
pyteleport wraps ``atexit.register``/``unregister`` to keep a record.
Handlers registered by libraries are not carried: importing the library on
the target registers them again.
"""
import atexit
import sys

# (func, args, kwargs, name of the registering module)
_recorded = []
_register = atexit.register
_unregister = atexit.unregister


def _recording_register(func, *args, **kwargs):
    result = _register(func, *args, **kwargs)
    _recorded.append((func, args, kwargs, sys._getframe(1).f_globals.get("__name__")))
    return result


def _recording_unregister(func):
    _unregister(func)
    _recorded[:] = [r for r in _recorded if r[0] != func]


_recording_register.__doc__ = _register.__doc__
_recording_unregister.__doc__ = _unregister.__doc__


def install() -> None:
    """Wrap atexit's functions (once per process)."""
    if atexit.register is not _recording_register:
        atexit.register = _recording_register
        atexit.unregister = _recording_unregister


def save():
    from .modules import program_module_names
    program = program_module_names({r[3] for r in _recorded})
    handlers = [(f, a, k) for f, a, k, who in _recorded if who in program]
    return handlers or None


def restore(handlers):
    for func, args, kwargs in handlers:
        _register(func, *args, **kwargs)
        _recorded.append((func, args, kwargs, "__main__"))
