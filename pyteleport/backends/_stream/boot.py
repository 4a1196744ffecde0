"""The target side of the ``bash`` and ``ssh`` backends.

The source does not run this module: it sends its text (compressed, on the
command line) to a Python started by a shell on the target, where it runs as
``__main__`` before pyteleport may even exist there.  It therefore uses the
standard library only.  Its steps, talking to the source over the shell
command's stdin and stdout (see ``backend.py`` for the other end):

1. check the interpreter (Python minor version, bytecode magic) against the
   *offer* on the command line, read the *manifest* from stdin and look up
   what is already there: the same pyteleport (by content), dill, bytecode,
   and the program's own files (by absolute path, size and SHA-256);
2. reply with one *hello* line on stdout: what it needs, which of those its
   ship cache holds, its pid, working directory, ``sys.path`` and
   environment (the source adapts the program's context to them);
3. read the *bundle* of shipped files from stdin into a private temporary
   directory (mode 0700); with the ship cache, files whose hash the hello
   listed come from the cache instead (checked again), and the others are
   added to it;
4. fork: the child becomes the program (``pyteleport._core.restore.restore`` reads
   the payload from stdin, sends the status line, runs the program); the
   parent is the *relay*: it feeds the program's stdin from the frames that
   follow the payload, delivers the signals the source forwards, hangs the
   program up (SIGHUP) if the connection drops, and when the program ends
   writes the *exit* line and removes the shipped files.

With ``detach`` the relay does not read stdin: the program's output goes to
files, both processes leave the shell's session and the connection closes
once the status has been sent.
"""
import os
import sys

# Lines this side writes on stdout; TOKEN comes from the source, so program
# output cannot be taken for them by accident.
HELLO = "\x1b[PYTELEPORT-HELLO {}] "
EXIT = "\x1b[PYTELEPORT-EXIT {}] "
STATUS = "\x1b[PYTELEPORT-STATUS] "   # the same as pyteleport._core.restore.STATUS_MARKER

BUNDLE_MAGIC = b"PTSHIP2\n"
# a bundle record's content: follows, or is the ship cache's file of that hash
CONTENT, CACHED = b"D", b"C"
# frames that follow the payload on stdin: type byte + u32 length + data
FRAME_HEADER = ">cI"
DATA, EOF, SIGNAL = b"D", b"E", b"S"
# the program's pending input the relay keeps at most before it stops reading
INPUT_LIMIT = 64 << 20
# the signals the source forwards; those a terminal sends to a whole process
# group reach the program's group (its children too), the others the program
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
GROUP_SIGNALS = ("SIGINT", "SIGQUIT", "SIGHUP")
SHIP_MARKER = ".pyteleport-ship"
# pid of the script's watchdog (``_stream._watchdog``), stopped once Python runs
WATCHDOG = "PYTELEPORT_WATCHDOG_PID"
PACKAGES = ("pyteleport", "dill", "bytecode")


def tree_digest(directory):
    """SHA-256 over the ``.py`` files of a package directory (names and
    the SHA-256 of their contents)."""
    return digest_of_tree((rel, file_digest(os.path.join(directory, rel))) for rel in _py_files(directory))


def digest_of_tree(files):
    """:func:`tree_digest` from ``(relative path, SHA-256)`` pairs."""
    import hashlib
    h = hashlib.sha256()
    for rel, sha in sorted(files):
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0" + sha.encode("ascii") + b"\0")
    return h.hexdigest()


def _py_files(directory):
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for name in filenames:
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(dirpath, name), directory).replace(os.sep, "/")


def file_digest(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Offer, manifest and hello are ``marshal``-ed dicts of plain values: both
# ends run the same Python version (checked first), and marshal costs no
# import (json would pull in ``re``).


def encode(value):
    """marshal + zlib + base64, one line of ASCII."""
    import binascii
    import marshal
    import zlib
    return binascii.b2a_base64(zlib.compress(marshal.dumps(value)), newline=False).decode("ascii")


def decode(text):
    import binascii
    import marshal
    import zlib
    return marshal.loads(zlib.decompress(binascii.a2b_base64(text)))


# --------------------------------------------------------------------------
# low-level I/O


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        view = view[n:]


def _read_exact(fd, n):
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError("the source closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _fail(message):
    """Refuse before the payload: the status line carries the reason."""
    try:
        _write_all(1, (STATUS + "ERR " + message.replace("\n", " ") + "\n").encode("utf-8", "replace"))
    except OSError:
        pass
    os._exit(2)


class _PayloadStream:
    """stdin as the payload reader: exact reads, nothing read past the
    payload; closing it runs ``on_close`` (the program's stdin changes)."""

    def __init__(self, fd, on_close):
        import io
        self._raw = io.FileIO(fd, "rb", closefd=False)
        self._on_close = on_close
        self.closed = False

    def fileno(self):
        return self._raw.fileno()

    def readinto(self, buffer):
        return self._raw.readinto(buffer)

    def read(self, n=-1):
        if n is None or n < 0:
            return self._raw.readall()
        parts = []
        while n > 0:
            chunk = self._raw.read(n)
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def readable(self):
        return True

    def close(self):
        if not self.closed:
            self.closed = True
            self._on_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------
# steps


def _check_python(offer):
    from importlib.util import MAGIC_NUMBER
    want = tuple(offer["python"])
    here = sys.version_info[:2]
    if here != want:
        _fail("this is Python %d.%d (%s), the program runs on Python %d.%d: start a Python %d.%d "
              "on the target (the backend's python= or setup= options)"
              % (here + (sys.executable,) + want + want))
    if MAGIC_NUMBER.hex() != offer["magic"]:
        _fail("this Python %d.%d (%s) has another bytecode magic number than the program's: "
              "use the same CPython release on the target" % (here + (sys.executable,)))


def _have_packages(manifest):
    from importlib.util import find_spec
    have = {}
    for name in PACKAGES:
        try:
            spec = find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or spec.origin in (None, "namespace"):
            have[name] = False   # absent, or only an empty folder of that name
        elif name == "pyteleport":
            locations = list(spec.submodule_search_locations or ())
            try:
                have[name] = bool(locations) and tree_digest(locations[0]) == manifest["pyteleport"]
            except OSError:
                have[name] = False
        else:
            have[name] = True
    return have


def _read_manifest():
    size = int.from_bytes(_read_exact(0, 4), "big")
    return decode(_read_exact(0, size))


def _needed_files(manifest):
    need = []
    for index, (path, size, digest, force) in enumerate(manifest["files"]):
        try:
            same = not force and os.stat(path).st_size == size and file_digest(path) == digest
        except OSError:
            same = False
        if not same:
            need.append(index)
    return need


def _sys_path():
    """This interpreter's own search path, without the entry ``-c`` adds."""
    path = list(sys.path)
    if path and path[0] == "":
        path = path[1:]
    return path


def _detach_files(offer):
    spec = offer.get("detach")
    if not spec:
        return None
    if spec is True:
        prefix = os.path.join(os.getcwd(), "pyteleport-%d" % os.getpid())
    elif spec == os.devnull:
        return [os.devnull, os.devnull]
    else:
        prefix = os.path.abspath(os.path.expanduser(spec))
    return [prefix + ".out", prefix + ".err"]


# --------------------------------------------------------------------------
# the ship cache: files received before, named by the SHA-256 of their content


def _cache_dir(create):
    """``$XDG_CACHE_HOME/pyteleport/ship`` (default ``~/.cache``), if it is
    this user's alone (mode 0700); None if it cannot be."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "pyteleport", "ship")
    try:
        if create:
            os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.stat(path)
        if st.st_uid != os.getuid():
            return None
        if st.st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError:
        return None
    return path


def _is_sha(text):
    return isinstance(text, str) and len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _cached(manifest, have, need):
    """Hashes of the files the source is to send that the cache holds intact
    (a damaged entry is removed: the source sends that file again)."""
    if not manifest.get("cache"):
        return []
    wanted = set(manifest.get("explicit", ()))
    for name, hashes in manifest.get("packages", {}).items():
        if not have.get(name):
            wanted.update(hashes)
    files = manifest["files"]
    wanted.update(files[i][2] for i in need)
    cache = _cache_dir(False)
    found = []
    for sha in sorted(wanted):
        if not (cache and _is_sha(sha)):
            continue
        path = os.path.join(cache, sha)
        try:
            intact = file_digest(path) == sha
        except OSError:
            continue
        if intact:
            found.append(sha)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
    return found


class _CacheEntry:
    """A file being received, written to the ship cache as well; it enters
    the cache (atomic rename) only if its content has the announced hash."""

    def __init__(self, cache, sha):
        import hashlib
        self.path = os.path.join(cache, sha)
        self.sha = sha
        self.hash = hashlib.sha256()
        self.tmp = os.path.join(cache, ".tmp-%d-%s" % (os.getpid(), os.urandom(6).hex()))
        self.fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def write(self, data):
        self.hash.update(data)
        if self.fd is not None:
            try:
                _write_all(self.fd, data)
            except OSError:   # a full disk: the cache is best effort
                os.close(self.fd)
                self.fd = None

    def close(self, complete):
        try:
            if self.fd is None:
                complete = False
            else:
                os.close(self.fd)
            if complete and self.hash.hexdigest() == self.sha:
                os.replace(self.tmp, self.path)
            else:
                os.unlink(self.tmp)
        except OSError:
            pass


def _cache_entry(cache, sha):
    if cache is None or sha == "0" * 64:
        return None
    try:
        return _CacheEntry(cache, sha)
    except OSError:
        return None


def _copy_cached(cache, sha, fd, name):
    import hashlib
    h = hashlib.sha256()
    try:
        with open(os.path.join(cache, sha), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                _write_all(fd, block)
    except OSError as e:
        raise ValueError("the ship cache lost %s (%s): try again" % (name, e))
    if h.hexdigest() != sha:
        try:
            os.unlink(os.path.join(cache, sha))
        except OSError:
            pass
        raise ValueError("the ship cache's copy of %s was damaged (removed): try again" % name)


def _receive_bundle(ship_dir, use_cache):
    import struct
    if _read_exact(0, len(BUNDLE_MAGIC)) != BUNDLE_MAGIC:
        raise ValueError("bad bundle header")
    cache = None   # made when a file arrives: a move that ships nothing leaves no trace
    (count,) = struct.unpack(">I", _read_exact(0, 4))
    for _ in range(count):
        (name_len,) = struct.unpack(">H", _read_exact(0, 2))
        name = _read_exact(0, name_len).decode("utf-8", "surrogateescape")
        mode, size = struct.unpack(">IQ", _read_exact(0, 12))
        kind = _read_exact(0, 1)
        sha = _read_exact(0, 32).hex()
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError("bad file name in the bundle: %r" % name)
        path = os.path.join(ship_dir, *parts)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, (mode & 0o700) | 0o600)
        try:
            if use_cache and cache is None:
                cache = _cache_dir(True)
            if kind == CACHED:
                if cache is None:
                    raise ValueError("the ship cache is gone (%s)" % name)
                _copy_cached(cache, sha, fd, name)
                continue
            entry = _cache_entry(cache, sha)
            complete = False
            try:
                while size:
                    chunk = os.read(0, min(size, 1 << 20))
                    if not chunk:
                        raise EOFError("the source closed the connection")
                    _write_all(fd, chunk)
                    if entry is not None:
                        entry.write(chunk)
                    size -= len(chunk)
                complete = True
            finally:
                if entry is not None:
                    entry.close(complete)
        finally:
            os.close(fd)
    return count


def _private_dir():
    """A new folder only this user can read (mode 0700), in $TMPDIR or /tmp,
    marked as a ship folder (a later move ships its content again)."""
    base = os.environ.get("TMPDIR") or "/tmp"
    if not os.path.isdir(base):
        base = os.path.expanduser("~")
    for _ in range(100):
        path = os.path.join(base, "pyteleport-ship-" + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.close(os.open(os.path.join(path, SHIP_MARKER), os.O_WRONLY | os.O_CREAT, 0o600))
        return path
    raise OSError("cannot make a private folder in %s" % base)


def _remove(ship_dir):
    if ship_dir:
        import shutil
        shutil.rmtree(ship_dir, ignore_errors=True)


def _grow_pipe(fd, size=1 << 20):
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (OSError, ValueError, ImportError):
        pass


# --------------------------------------------------------------------------
# the program (child) and the relay (parent)


def _run_program(restore, status_fd, on_payload_read):
    import signal
    # the program gets Ctrl-C from the source: KeyboardInterrupt as usual
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCHLD"):
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    # a pipe only the source writes to (the ssh connection, bash's stdin)
    restore(_PayloadStream(0, on_payload_read), status_fd, signed=False)
    os._exit(0)   # not reached: restore() ends the process


def _exit_code(status):
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _relay(child, token, stdin_w, sync_r, ship_dir):
    import selectors
    import signal
    import struct

    def deliver(name):
        sig = getattr(signal, name, None)
        if sig is None:
            return
        try:
            if name in GROUP_SIGNALS:
                os.killpg(child, sig)
            else:
                os.kill(child, sig)
        except (ProcessLookupError, PermissionError):
            pass

    # signals sent to the relay itself (``kill``, a batch system) go to the program too
    for name in FORWARDED:
        signal.signal(getattr(signal, name), lambda signum, _f: deliver(signal.Signals(signum).name))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    # the program reads the payload from stdin first; frames come after it
    try:
        os.read(sync_r, 1)
    except OSError:
        pass
    os.close(sync_r)

    os.set_blocking(stdin_w, False)
    pending = bytearray()      # input for the program, not yet written
    inbox = bytearray()        # bytes from the source, not yet parsed
    stdin_open, input_eof, connected = True, False, True
    header = struct.calcsize(FRAME_HEADER)
    sel = selectors.DefaultSelector()
    sel.register(wake_r, selectors.EVENT_READ)
    sel.register(0, selectors.EVENT_READ)
    reading = True
    while True:
        try:
            pid, status = os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            pid, status = child, 0
        if pid == child:
            break
        # what to wait for: input from the source unless too much is pending,
        # room in the program's stdin while there is input for it
        want_read = connected and len(pending) < INPUT_LIMIT
        if want_read and not reading:
            sel.register(0, selectors.EVENT_READ)
        elif reading and not want_read:
            sel.unregister(0)
        reading = want_read
        if stdin_open and pending:
            try:
                sel.register(stdin_w, selectors.EVENT_WRITE)
            except KeyError:
                pass
        for key, _ in sel.select():
            if key.fd == wake_r:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
            elif key.fd == 0:
                try:
                    data = os.read(0, 1 << 16)
                except OSError:
                    data = b""
                if not data:
                    # the connection is gone: hang the program up, as a terminal would
                    connected = False
                    deliver("SIGHUP")
                    input_eof = True
                    continue
                inbox += data
                while len(inbox) >= header:
                    kind, size = struct.unpack_from(FRAME_HEADER, inbox)
                    if len(inbox) < header + size:
                        break
                    body = bytes(inbox[header:header + size])
                    del inbox[:header + size]
                    if kind == DATA:
                        if stdin_open:
                            pending += body
                    elif kind == EOF:
                        input_eof = True
                    elif kind == SIGNAL:
                        deliver(body.decode("ascii", "replace"))
            elif key.fd == stdin_w:
                try:
                    n = os.write(stdin_w, pending[:1 << 16])
                    del pending[:n]
                except BlockingIOError:
                    pass
                except OSError:      # the program closed its stdin
                    pending.clear()
                    stdin_open = False
                if not pending or not stdin_open:
                    sel.unregister(stdin_w)
        if stdin_open and input_eof and not pending:
            try:
                sel.unregister(stdin_w)
            except (KeyError, ValueError):
                pass
            os.close(stdin_w)
            stdin_open = False
    code = _exit_code(status)
    try:
        _write_all(1, (EXIT.format(token) + "%d\n" % code).encode())
    except OSError:
        pass
    _remove(ship_dir)
    os._exit(code)


def _detached_waiter(child, ship_dir):
    """Stays behind a detached program to remove the shipped files when it ends."""
    while True:
        try:
            os.waitpid(child, 0)
            break
        except ChildProcessError:
            break
        except InterruptedError:
            continue
    _remove(ship_dir)
    os._exit(0)


def _open_output(path):
    # never through a link another user planted there
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o600)


def _stop_watchdog():
    """Python runs: the script's watchdog (a subshell and its ``sleep``) must
    not kill the target any more.  Stopped first (when it is our child: the
    shell that started it became this process), it starts nothing while its
    processes are killed."""
    pid = os.environ.pop(WATCHDOG, "")
    if not pid.isdigit():
        return
    import signal
    pid = int(pid)
    parent = _parent(pid)
    ours = parent == os.getpid()
    if not ours and (parent != os.getppid() or _group(pid) != os.getpgrp()):
        # not our sibling in our group: the watchdog ended, and its pid may
        # be another process's by now (pids wrap at 32768 on many machines)
        return
    try:
        if ours:
            os.kill(pid, signal.SIGSTOP)
            os.waitpid(pid, os.WUNTRACED)
        for child in _children(pid):
            os.kill(child, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        if ours:
            os.waitpid(pid, 0)
    except OSError:
        pass


def _parent(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _group(pid):
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        pass
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and _parent(int(e)) == pid]


def main():
    _stop_watchdog()
    offer = decode(sys.argv[1])
    _check_python(offer)
    try:
        manifest = _read_manifest()
    except EOFError:
        os._exit(2)
    have = _have_packages(manifest)
    need = _needed_files(manifest)
    cached = _cached(manifest, have, need)
    try:
        ship_dir = _private_dir()
    except OSError as e:
        _fail("cannot make a private folder for the shipped files: %s" % e)
    outputs = _detach_files(offer)
    hello = {
        "pid": os.getpid(),
        "host": os.uname().nodename,
        "executable": sys.executable,
        "version": sys.version.split()[0],
        "cwd": os.getcwd(),
        "path": _sys_path(),
        "environ": dict(os.environ),
        "have": have,
        "need": need,
        "cached": cached,
        "ship_dir": ship_dir,
        "outputs": outputs,
    }
    try:
        _write_all(1, (HELLO.format(offer["token"]) + encode(hello) + "\n").encode("ascii"))
    except OSError:       # the connection dropped before this reply: nothing to leave behind
        _remove(ship_dir)
        os._exit(2)
    _grow_pipe(0)
    restore = None
    if have["pyteleport"]:
        # while the source sends the payload
        try:
            from pyteleport._core.restore import restore
        except Exception:
            restore = None
    try:
        count = _receive_bundle(ship_dir, manifest.get("cache"))
    except EOFError:
        _remove(ship_dir)
        os._exit(2)
    except (OSError, ValueError) as e:
        _remove(ship_dir)
        _fail("cannot store the shipped files in %s: %s" % (ship_dir, e))
    if count == 0:
        _remove(ship_dir)
        ship_dir = None
    lib = os.path.join(ship_dir, "lib") if ship_dir else None
    if lib and os.path.isdir(lib):
        sys.path.insert(0, lib)
    try:
        if restore is None:
            from pyteleport._core.restore import restore
    except Exception as e:
        _remove(ship_dir)
        _fail("cannot import pyteleport's restore side with %s: %s: %s"
              % (sys.executable, type(e).__name__, e))

    if outputs:
        try:
            out_fd, err_fd = _open_output(outputs[0]), _open_output(outputs[1])
        except OSError as e:
            _remove(ship_dir)
            _fail("cannot open the output file for the detached program: %s" % e)
        # the waiter and the program leave the shell's session; this process
        # ends, the connection closes once the status line is sent
        if os.fork():
            os._exit(0)
        os.setsid()
        child = os.fork()
        if child:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.close(out_fd)
            os.close(err_fd)
            _detached_waiter(child, ship_dir)
        status_fd = os.dup(1)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.close(out_fd)
        os.close(err_fd)

        def payload_read():
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
        _run_program(restore, status_fd, payload_read)

    stdin_r, stdin_w = os.pipe()
    sync_r, sync_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(stdin_w)
        os.close(sync_r)
        os.setpgid(0, 0)   # Ctrl-C reaches the program's own process group only
        status_fd = os.dup(1)

        def payload_read():
            os.dup2(stdin_r, 0)
            os.close(stdin_r)
            try:
                os.write(sync_w, b"R")
            finally:
                os.close(sync_w)
        _run_program(restore, status_fd, payload_read)
    os.close(stdin_r)
    os.close(sync_w)
    try:
        os.setpgid(child, child)
    except OSError:
        pass
    _relay(child, offer["token"], stdin_w, sync_r, ship_dir)


if __name__ == "__main__":
    main()
