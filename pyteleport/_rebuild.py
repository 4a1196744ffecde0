"""Constructors that payloads refer to when they are loaded on the target.

This module is imported by every resumed process: it must stay tiny and import
nothing beyond the standard library modules it needs.
"""
import os
import sys


class NullPair:
    """3.9/3.10: ``LOAD_METHOD v`` on an instance pushes (NULL, value)."""
    def __init__(self, value):
        self.v = value


def fill_code(bare, fills):
    """A morph code object: its template with this frame's values filled in."""
    consts = list(bare.co_consts)
    for index, value in fills:
        consts[index] = value
    return bare.replace(co_consts=tuple(consts))


def morph_function(bare, fills, globals_, closure):
    """The function that rebuilds one frame when called with no arguments."""
    import types
    code = fill_code(bare, fills)
    fn = types.FunctionType(code, globals_, code.co_name, None, closure)
    if code.co_argcount:
        fn.__defaults__ = (None,) * code.co_argcount
    if code.co_kwonlyargcount:
        names = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
        fn.__kwdefaults__ = dict.fromkeys(names)
    fn.__qualname__ = getattr(code, "co_qualname", code.co_name)
    return fn


def code_from_marshal(data):
    import marshal
    return marshal.loads(data)


def module_dict(name):
    return import_module(name).__dict__


def start_generator(fn):
    """A generator that runs its morph prologue on its first resume."""
    return fn()


def resume_generator(fn):
    """A generator suspended at a yield: run the prologue up to the yield."""
    gen = fn()
    next(gen)
    return gen


def exhausted_generator():
    def exhausted():
        return
        yield  # noqa: unreachable, makes this a generator
    gen = exhausted()
    for _ in gen:
        pass
    return gen


def import_module(name):
    module = sys.modules.get(name)
    if module is None:
        import importlib
        module = importlib.import_module(name)
    return module


def std_stream(name):
    return getattr(sys, name)


def reopen(path, mode, position, encoding, errors, newline, buffering):
    """A file that was open for reading, at the same position."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"file {path!r} was open for reading in the program but does not exist here")
    kwargs = {} if "b" in mode else {"encoding": encoding, "errors": errors, "newline": newline}
    f = open(path, mode, buffering, **kwargs)
    f.seek(position)
    return f


def closed_file(path, mode):
    """A closed file object of the same kind (its path is not touched)."""
    f = open(os.devnull, mode)
    f.close()
    return f


def bytes_from(buffer):
    return bytes(buffer)


def bytearray_from(buffer):
    return buffer if isinstance(buffer, bytearray) else bytearray(buffer)
