"""The C pickler (``_pickle``), loaded without ``functools`` when possible.

``_pickle`` imports ``functools`` only to keep ``functools.partial``, which
is the C type ``_functools.partial``; ``functools`` in turn loads
``collections``, ``operator``, ``reprlib``, ``keyword`` and more.  That chain
is the largest single cost of restoring a small program (about half of what
the restore adds to the interpreter's own start-up), on both sides of a move.
So while no other thread can be importing, ``_pickle`` is loaded with a
stand-in ``functools`` that holds only ``partial``; the stand-in leaves
``sys.modules`` right after, and a later ``import functools`` loads the real
module.  Should an interpreter want more of ``functools`` there, the real one
is imported instead.
"""
import sys


def _single_threaded() -> bool:
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


def _load():
    if "_pickle" in sys.modules and sys.modules["_pickle"] is None:
        # the program blocked the accelerator for its own pickling (as
        # pyperformance's --pure-python does): load it for ours, and leave
        # the block in place for the program
        del sys.modules["_pickle"]
        try:
            import _pickle
        finally:
            sys.modules["_pickle"] = None
        return _pickle
    if "_pickle" in sys.modules or "functools" in sys.modules or not _single_threaded():
        import _pickle
        return _pickle
    import _functools
    stand_in = type(sys)("functools")
    stand_in.partial = _functools.partial
    sys.modules["functools"] = stand_in
    try:
        import _pickle
    except Exception:   # it needs more than partial: give it the real module
        del sys.modules["functools"]
        import _pickle
    finally:
        if sys.modules.get("functools") is stand_in:
            del sys.modules["functools"]
    return _pickle


_pickle = _load()
Pickler = _pickle.Pickler
Unpickler = _pickle.Unpickler
PickleBuffer = _pickle.PickleBuffer
dumps = _pickle.dumps
loads = _pickle.loads
