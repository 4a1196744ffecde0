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


# persistent ids written by the pickler (see _pickler._Rules.persistent_id)
PID_BUFFER = "buffer"
PID_MODULE_DICT = "module_dict"
_PID_LOADED = "loaded"


def persistent_load(pid):
    kind = pid[0]
    if kind == PID_BUFFER:
        # a list that every reference to the buffer shares (the memo): it
        # keeps the object rebuilt on the first load for the next ones
        _, is_bytes, buffer = pid
        obj = bytes_from(buffer) if is_bytes else bytearray_from(buffer)
        pid[:] = (_PID_LOADED, obj)
        return obj
    if kind == _PID_LOADED:
        return pid[1]
    if kind == PID_MODULE_DICT:
        return module_dict(pid[1])
    raise ValueError(f"unknown persistent id {kind!r} in the payload")


def same(value):
    """The value itself (a reduction that stands for another object)."""
    return value


def new_cell(*contents):
    import types
    return types.CellType(*contents)


def function(code, globals_, name, defaults, closure):
    """A function that travelled by value (see set_function_state)."""
    import types
    if isinstance(globals_, str):
        globals_ = module_dict(globals_)
    return types.FunctionType(code, globals_, name, defaults, closure)


def set_function_state(fn, state):
    for key, value in state.items():
        if key == "__dict__":
            fn.__dict__.update(value)
        else:
            setattr(fn, key, value)


def fill_code(bare, fills):
    """A morph code object: its template with this frame's values filled in."""
    consts = list(bare.co_consts)
    for index, value in fills:
        consts[index] = value
    return bare.replace(co_consts=tuple(consts))


def morph_function(bare, fills, globals_, closure):
    """The function that rebuilds one frame when called with no arguments.
    ``globals_`` is a namespace or the name of the module that owns it."""
    import types
    if isinstance(globals_, str):
        globals_ = module_dict(globals_)
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
    """A generator or coroutine suspended at a yield (or an await): run the
    prologue up to the yield."""
    gen = fn()
    gen.send(None)
    return gen


def exhausted_generator():
    def exhausted():
        return
        yield  # unreachable: makes this a generator
    gen = exhausted()
    for _ in gen:
        pass
    return gen


def bound_slot(objclass, name, obj):
    """``objclass``'s own slot method ``name`` bound to ``obj``."""
    return objclass.__dict__[name].__get__(obj, type(obj))


def closed_coroutine():
    async def closed():
        pass
    coro = closed()
    coro.close()    # closed before it started: no "never awaited" warning
    return coro


def import_module(name, *submodules):
    """The module ``name``, imported here if it is not yet, and the
    ``submodules`` the source had loaded on it (``import deap.tools`` sets
    ``deap.tools``, which importing ``deap`` alone does not)."""
    module = sys.modules.get(name)
    missing = [sub for sub in submodules if sub not in sys.modules]
    if module is None or missing:
        import importlib
        if module is None:
            module = importlib.import_module(name)
        for sub in missing:
            try:
                importlib.import_module(sub)
            except ImportError:
                pass    # the package itself is here: its use will say what is missing
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


def reopen_for_writing(path, mode, position, size, mtime_ns, encoding, errors):
    """A file that was open for writing, reopened without truncating it.

    Only the very file the program had is reopened: it must exist here with
    the size and modification time it had at the move (the same file, or a
    copy on a shared file system that nothing changed since); otherwise
    writing at the old position could overwrite what it holds now.  Files
    open for appending only need to exist: appends go to the end anyway.
    """
    append = "a" in mode
    try:
        now = os.stat(path)
    except OSError:
        raise FileNotFoundError(
            f"file {path!r} was open for writing in the program but does not exist here") from None
    if not append and (now.st_size, now.st_mtime_ns) != (size, mtime_ns):
        raise FileExistsError(
            f"file {path!r} was open for writing at offset {position} in the program and has "
            f"changed since (size {now.st_size}, was {size}): it is not reopened, so that "
            "nothing in it is overwritten; restore the file or resume where it is unchanged "
            "(a log or results file the program only adds to: open it with mode 'a', which "
            "is reopened at its end whatever it holds)")
    flags = (os.O_RDWR if "+" in mode else os.O_WRONLY) | (os.O_APPEND if append else 0)
    # an open descriptor: open() truncates only files it opens by name
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    kwargs = {} if "b" in mode else {"encoding": encoding, "errors": errors}
    try:
        f = open(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise
    raw = f.buffer.raw if "b" not in mode else getattr(f, "raw", f)
    raw.name = path
    if not append:
        f.seek(position)
    return f


def reopen_devnull(mode):
    return open(os.devnull, mode)


def closed_file(path, mode):
    """A closed file object of the same kind (its path is not touched)."""
    f = open(os.devnull, mode)
    f.close()
    return f


def bytes_from(buffer):
    return bytes(buffer)


def bytearray_from(buffer):
    return buffer if isinstance(buffer, bytearray) else bytearray(buffer)


def bound_method(func, obj):
    import types
    return types.MethodType(func, obj)


def regex_match(pattern, string, pos, endpos, method):
    """A ``re.Match``: the same match, found again (see the pickler)."""
    return getattr(pattern, method)(string, pos, endpos)


def main_global(name, value):
    """A global of ``__main__``, in place before the rest of the program is
    rebuilt (see the pickler's main_globals_first)."""
    sys.modules["__main__"].__dict__[name] = value


def mapping_proxy(d):
    import types
    return types.MappingProxyType(d)


def new_lock(locked):
    import _thread
    lock = _thread.allocate_lock()
    if locked:
        lock.acquire()
    return lock


def new_rlock(count):
    import _thread
    lock = _thread.RLock()
    for _ in range(count):
        lock.acquire()
    return lock


def load_state(unpickler):
    """What the pickler's dumps() wrote: the root, then (deep mode) the
    batches of attributes it deferred, applied in order, to the end."""
    root = unpickler.load()
    while True:
        try:
            batch = unpickler.load()
        except EOFError:
            return root
        for obj, state in batch:
            set_instance_state(obj, state)


def set_instance_state(obj, state):
    """What pickle's default ``__setstate__`` does, without looking the
    method up on ``obj`` (see the pickler's _forwards_attributes)."""
    state, slots = state
    if state:
        obj.__dict__.update(state)
    if slots:
        for key, value in slots.items():
            setattr(obj, key, value)


def json_encoder(*settings):
    import _json
    return _json.make_encoder(*settings)


def json_scanner(settings):
    import _json
    import types
    # the scanner reads its settings off a context object once, when made
    # (memo is its own)
    return _json.make_scanner(types.SimpleNamespace(**settings))


class SendNone:
    """Stands for ``gen.send`` or ``gen.throw`` in a call that is executed
    again after a move: it starts the restored generator (whatever the call
    passed had been delivered before the move)."""
    __slots__ = ("gen",)

    def __init__(self, gen):
        self.gen = gen

    def __call__(self, *_delivered):
        return self.gen.send(None)

    def __reduce__(self):
        return SendNone, (self.gen,)
