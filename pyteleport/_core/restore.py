"""The restore entry point: runs in the target process.

It reads and verifies a payload, restores the process context (working
directory, environment, ``sys.argv``, ``sys.path``), rebuilds ``__main__`` and
every object, reports to the source that the program is rebuilt, and runs it.
It imports only what loading the payload needs: the heavy parts of pyteleport
(snapshot, compiler, bytecode) stay on the source side.
"""
import io
import os
import sys

# the C implementation directly: pickle.py would import re, functools,
# struct and more in every resumed process
from .._payload.cpickle import Unpickler, loads as pickle_loads

from .._payload.container import PayloadError, read

EXIT_BAD_PAYLOAD = 2

# set in the resumed process: the index of this task in a fan-out, if any
task_index = None


# The status line the target sends once, before the program runs.  Backends
# with a single channel (ssh) get it on the target's stdout, ahead of the
# program's output, so it carries a marker no program prints by accident.
STATUS_MARKER = "\x1b[PYTELEPORT-STATUS] "


def parse_status(line: str):
    """``(True, "")`` for success, ``(False, reason)`` for a refusal, ``None``
    if ``line`` is not a status line."""
    if not line.startswith(STATUS_MARKER):
        return None
    verdict = line[len(STATUS_MARKER):].rstrip("\n")
    if verdict == "OK":
        return True, ""
    return False, verdict[4:] if verdict.startswith("ERR ") else verdict


class _Status:
    """The channel that tells the source whether the rebuild worked."""

    def __init__(self, fd, on_error=None):
        self.fd = fd
        self.on_error = on_error

    def send(self, verdict: str) -> None:
        if self.fd is None:
            return
        line = STATUS_MARKER + verdict.replace("\n", " ") + "\n"
        try:
            os.write(self.fd, line.encode("utf-8", "replace"))
            if self.fd > 2:   # a dedicated pipe; a standard stream stays the program's
                os.close(self.fd)
        except OSError:
            pass
        self.fd = None


def _fail(status: _Status, message: str) -> None:
    """Report ``message`` and end the process (exit 2)."""
    if status.on_error is not None:
        message = status.on_error(message) or message
    if status.fd is not None:
        status.send("ERR " + message)
    else:
        sys.stderr.write(f"pyteleport: {message}\n")
    sys.stderr.flush()
    os._exit(EXIT_BAD_PAYLOAD)


class _Unpickler(Unpickler):
    """The C unpickler, reading dill's pickles too: dill itself is imported
    only if the payload refers to its constructors (functions or classes that
    travel by value), which keeps restoring cheap for everything else."""

    def persistent_load(self, pid):
        from .._payload.rebuild import persistent_load
        return persistent_load(pid)

    def find_class(self, module, name):
        if module == "__builtin__":          # dill's names for builtins and __main__
            if name == "__main__":
                return sys.modules["__main__"].__dict__
            if name == "NoneType":
                return type(None)
            module = "builtins"
        elif module == "dill.dill":
            module = "dill._dill"
        return super().find_class(module, name)


def _apply_context(ctx: dict, launch_env=None, index=None) -> None:
    global task_index
    os.chdir(ctx["cwd"])
    os.environ.clear()
    os.environ.update(ctx["environ"])
    for key, value in (launch_env or {}).items():
        if ctx["environ"].get(key) != value:
            os.environ[key] = value
    sys.argv[:] = ctx["argv"]
    sys.path[:] = ctx["path"]
    task_index = index if index is not None else ctx.get("task_index")


def _new_main(ctx: dict):
    main = type(sys)("__main__")
    main.__dict__["__builtins__"] = __builtins__ if isinstance(__builtins__, dict) else vars(__builtins__)
    main.__spec__ = None
    main.__loader__ = None
    if ctx.get("main_spec"):
        # run with -m: the program may look at __spec__ (as runpy sets it)
        import importlib.util
        try:
            main.__spec__ = importlib.util.find_spec(ctx["main_spec"])
        except (ImportError, ValueError):
            main.__spec__ = importlib.util.spec_from_loader(ctx["main_spec"], None)
        main.__loader__ = getattr(main.__spec__, "loader", None)
    sys.modules["__main__"] = main
    return main


def restore(stream, status_fd=None, *, launch_env=None, task_index=None,
            after_context=None, before_run=None, on_error=None, signed=True) -> None:
    """Rebuild the program from ``stream`` and run it; does not return normally.

    Backends that start the target through a launcher (mpirun, Slurm) adjust
    the restore with:
    ``launch_env``    variables the launcher set for this process, kept on top
                      of the program's environment (PMI_*, SLURM_*);
    ``task_index``    this process's index in a fan-out (rank, array task);
    ``after_context`` called once the context is restored, before any object
                      of the program is rebuilt;
    ``before_run``    called once the source was told the rebuild worked,
                      right before the program runs;
    ``on_error``      called with the reason when this process cannot rebuild
                      the program, before it reports it and exits (MPI ranks
                      tell each other, see pyteleport.mpi._resume); may return a more
                      specific reason;
    ``signed``        the payload must be signed with this user's key (it
                      comes from a file); False for a pipe only the source
                      writes to, where its checksum is enough.
    A program that used MPI gets its recorded communicators re-created
    (collectively, see pyteleport.mpi._world) before its objects are rebuilt.
    """
    status = _Status(status_fd, on_error)
    try:
        _, payload = read(stream, signed=signed)
    except PayloadError as e:
        _fail(status, str(e))
    except OSError as e:
        _fail(status, f"cannot read the payload: {e}")
    finally:
        stream.close()
    try:
        ctx = pickle_loads(payload.context)
        _apply_context(ctx, launch_env, task_index)
        if after_context is not None:
            after_context()
        if ctx.get("mpi") is not None:
            from ..mpi._world import rebuild
            rebuild(ctx["mpi"]["comms"])
    except Exception as e:
        _fail(status, f"cannot restore the process context: {type(e).__name__}: {e}")
    main = _new_main(ctx)
    try:
        from .._payload.rebuild import load_state
        state = load_state(_Unpickler(io.BytesIO(payload.state), buffers=payload.buffers))
        main.__dict__.update(state["main"])
        for name, attrs in state["modules"].items():
            module = sys.modules.get(name)
            if module is None:
                import importlib
                module = importlib.import_module(name)
            for key, value in attrs.items():
                setattr(module, key, value)
        if state["signals"]:
            import signal
            for sig, handler in state["signals"].items():
                signal.signal(sig, handler)
        for name, restore_state, value in state.get("state", ()):
            try:
                restore_state(value)    # module state (pyteleport/_state), before the program runs
            except Exception as e:
                raise RuntimeError(f"restoring the state of module {name}: {type(e).__name__}: {e}") from None
    except Exception as e:
        _fail(status, f"cannot rebuild the program here: {type(e).__name__}: {e}")
    del payload
    status.send("OK")
    if before_run is not None:
        before_run()
    if ctx.get("cell") is not None:     # a notebook cell: its namespace goes back
        from .._notebook.target import run_cell
        run_cell(state["chain"][-1], main.__dict__, ctx["cell"])
    _run(state["chain"][-1], main.__dict__)


def _run(entry, namespace) -> None:
    try:
        exec(entry, namespace)
    except SystemExit:
        raise
    except BaseException as e:
        # hide this entry point's own frame from the traceback
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        sys.excepthook(type(e), e.with_traceback(tb), tb)
        sys.stderr.flush()
        sys.exit(130 if isinstance(e, KeyboardInterrupt) else 1)
    sys.exit(0)


def main_fd(argv=None) -> None:
    """Entry used by backends: ``--payload-fd N --status-fd M``."""
    argv = sys.argv[1:] if argv is None else argv
    opts = dict(zip(argv[::2], argv[1::2]))
    payload_fd = int(opts["--payload-fd"])
    status_fd = int(opts["--status-fd"]) if "--status-fd" in opts else None
    if "--hop-fd" in opts:       # a hop of a chain of local moves
        from .. import _hop
        _hop.take(int(opts["--hop-fd"]))
    # unbuffered: on stdin, what follows the payload is the program's input
    with open(payload_fd, "rb", buffering=0, closefd=payload_fd > 2) as stream:
        restore(stream, status_fd, signed=False)


def open_payload(path: str, what: str = "payload"):
    """``path`` opened for reading if it is this user's own regular file, not
    writable by others (never through a symbolic link); raises
    :class:`PayloadError` (one line) or OSError."""
    from .._payload.private import UnsafeFile, open_file
    try:
        return open_file(path, what)
    except UnsafeFile as e:
        raise PayloadError(str(e)) from None


def resume_file(path: str) -> None:
    try:
        stream = open_payload(path)
    except PayloadError as e:
        sys.stderr.write(f"pyteleport: {e}\n")
        sys.exit(EXIT_BAD_PAYLOAD)
    except OSError as e:
        sys.stderr.write(f"pyteleport: cannot open {path}: {e.strerror}\n")
        sys.exit(EXIT_BAD_PAYLOAD)
    with stream:
        restore(stream)
