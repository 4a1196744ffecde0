"""The payload format: what travels from the source to the target.

Layout (little-endian)::

    header   magic b"PYTLPORT"  u16 format  u8 py_major  u8 py_minor
             4s bytecode magic  u8 checksum kind (see checksum.py, signing.py)
             u8 n  n bytes pyteleport version
             8s key id          (signed payloads only: which key signed it)
    context  u64 n, n bytes     plain pickle: process context and manifest
    state    u64 n, n bytes     dill pickle protocol 5: the program
    buffers  u32 count, then per buffer: u8 kind (b"a" bytearray, b"b" bytes),
             u64 n, n bytes (out-of-band pickle buffers)
    trailer  b"PTEND" u64 checksum of everything before the trailer, or
             the 32-byte MAC of a signed payload

The header is checked before anything else is read, and the checksum (the
MAC) before anything is unpickled, so a payload from another Python, a
truncated, corrupted or forged file is refused without executing any of it.
Payloads in files are signed (see signing.py); those sent over a pipe or an
ssh connection (channels only the source can write to) carry the faster
checksum.
"""
from __future__ import annotations

import os
import sys
from . import checksum as _checksum
from .cpickle import PickleBuffer

# importlib.util.MAGIC_NUMBER without importing importlib.util (milliseconds
# in every resumed process): the frozen bootstrap module is always loaded
MAGIC_NUMBER = getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", None)
if MAGIC_NUMBER is None:   # pragma: no cover (an unusual import system)
    from importlib.util import MAGIC_NUMBER

# The restoring side imports this module: standard library only, and no
# typing or dataclasses (they cost every resumed process milliseconds).

MAGIC = b"PYTLPORT"
# 3: pyteleport's own helpers moved into sub-packages (the pickles name them)
# 4: signed payloads (a key id in the header, a MAC in the trailer)
FORMAT_VERSION = 4


class _Uint:
    """``struct.Struct("<Q")`` / ``("<I")`` without the struct module (one
    shared library less to load in every resumed process)."""

    def __init__(self, size: int):
        self.size = size

    def pack(self, n: int) -> bytes:
        return n.to_bytes(self.size, "little")

    def unpack(self, data) -> tuple:
        if len(data) != self.size:
            raise ValueError(f"expected {self.size} bytes, got {len(data)}")
        return (int.from_bytes(data, "little"),)


class _Header:
    """``struct.Struct("<8sHBB4sBB")``: magic, format, Python major and minor,
    bytecode magic, checksum kind, length of the pyteleport version that
    follows."""
    size = 18

    def pack(self, magic: bytes, fmt: int, major: int, minor: int, bc_magic: bytes, checksum: int,
             n: int) -> bytes:
        if len(magic) != 8 or len(bc_magic) != 4:
            raise ValueError("bad header fields")
        return (magic + fmt.to_bytes(2, "little") + bytes((major, minor)) + bc_magic
                + bytes((checksum, n)))

    def unpack(self, data) -> tuple:
        data = bytes(data)
        if len(data) != self.size:
            raise ValueError(f"expected {self.size} bytes, got {len(data)}")
        return (data[:8], int.from_bytes(data[8:10], "little"), data[10], data[11], data[12:16],
                data[16], data[17])

    def unpack_from(self, data, offset: int = 0) -> tuple:
        return self.unpack(data[offset:offset + self.size])

    def pack_into(self, buf, offset: int, *fields) -> None:
        buf[offset:offset + self.size] = self.pack(*fields)


HEADER = _Header()
U64 = _Uint(8)
U32 = _Uint(4)
TRAILER_MAGIC = b"PTEND"
TRAILER_SIZE = len(TRAILER_MAGIC) + 8       # of a checksummed payload
KIND_BYTEARRAY = b"a"
KIND_BYTES = b"b"
CHUNK = 1 << 20
# parts this large are read into a buffer that is not zero-filled first
RAW_ALLOC = 1 << 20
# parts this large are read into transparent huge pages, where the kernel
# has them
HUGE_ALLOC = 4 << 20


class PayloadError(Exception):
    """The payload cannot be used here; the message is one line for the user."""


def _pyteleport_version() -> str:
    from .. import __version__
    return __version__


# a buffer this large is checksummed in a thread beside its write, if the
# checksum releases the GIL and is slower than the write
CRC_THREAD_MIN = 64 << 20


def _write_chunks(view, out, progress) -> None:
    for start in range(0, len(view), CHUNK):
        chunk = view[start:start + CHUNK]
        out.write(chunk)
        if progress is not None:
            progress(len(chunk))


def _checksum_beside(view, checksum, write) -> None:
    """``checksum.update(view)`` in a thread while ``write()`` runs."""
    import threading
    worker = threading.Thread(target=checksum.update, args=(view,), daemon=True)
    worker.start()
    try:
        write()
    finally:
        worker.join()


class Payload:
    """A packed program: ``context`` and ``state`` pickles and the
    out-of-band buffers of ``state``."""

    __slots__ = ("context", "state", "buffers")

    def __init__(self, context: bytes, state: bytes, buffers: "list | None" = None):
        self.context = context
        self.state = state
        self.buffers = buffers if buffers is not None else []

    @property
    def size(self) -> int:
        """Bytes written unsigned (a signed payload has 32 more)."""
        return (HEADER.size + len(_pyteleport_version().encode()) + 8 + len(self.context)
                + 8 + len(self.state) + 4 + sum(9 + memoryview(b).nbytes for b in self.buffers)
                + TRAILER_SIZE)

    def write_to(self, out, progress=None, checksum=None, sign: bool = False) -> None:
        """Stream the payload to ``out`` without copying the buffers;
        ``checksum``: a :mod:`.checksum` class (default: the fastest here);
        ``sign``: a MAC with this user's key instead (for a file, see
        signing.py; raises TeleportError if the key cannot be used)."""
        key_id = b""
        if sign:
            from . import signing
            try:
                key, key_id, _ = signing.load_key(create=True)
            except signing.SigningError as e:
                from .._errors import TeleportError
                raise TeleportError(f"cannot sign the payload: {e}") from None
            digest = signing.Mac(key)
        else:
            digest = checksum() if checksum is not None else _checksum.best()

        def put(data):
            view = memoryview(data).cast("B")
            if len(view) >= CRC_THREAD_MIN and digest.threaded:
                # a big buffer: checksum it in a thread while it is written
                # (both release the GIL), so that it costs no wall time
                _checksum_beside(view, digest, lambda: _write_chunks(view, out, progress))
                return
            for start in range(0, len(view), CHUNK):
                chunk = view[start:start + CHUNK]
                digest.update(chunk)
                out.write(chunk)
                if progress is not None:
                    progress(len(chunk))

        version = _pyteleport_version().encode()
        put(HEADER.pack(MAGIC, FORMAT_VERSION, sys.version_info[0], sys.version_info[1],
                        MAGIC_NUMBER, digest.kind, len(version)) + version + key_id)
        put(U64.pack(len(self.context)))
        put(self.context)
        put(U64.pack(len(self.state)))
        put(self.state)
        put(U32.pack(len(self.buffers)))
        for b in self.buffers:
            raw = b.raw() if isinstance(b, PickleBuffer) else memoryview(b)
            # a bytes object is rebuilt as bytes, read in place on the target
            kind = KIND_BYTES if type(memoryview(b).obj) is bytes else KIND_BYTEARRAY
            put(kind + U64.pack(raw.nbytes))
            put(raw)
        value = digest.digest()
        trailer = TRAILER_MAGIC + (value if sign else U64.pack(value))
        out.write(trailer)
        out.flush()
        if progress is not None:
            progress(len(trailer))


def sync_option(value, what: str) -> bool:
    """The ``sync`` option of a checkpoint, else ``PYTELEPORT_SYNC``, else
    True: whether files are forced to disk before the call returns."""
    name = "sync"
    if value is None:
        value = os.environ.get("PYTELEPORT_SYNC", "1")
        name = "PYTELEPORT_SYNC"
    if isinstance(value, str):
        flag = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}.get(
            value.strip().lower())
        if flag is not None:
            return flag
    elif isinstance(value, bool):
        return value
    from .._errors import TeleportError
    raise TeleportError(f"{what}: {name} must be true or false (1/0), not {value!r}")


TMP_TAG = "pyteleport-tmp"


def _tmp_name(path: str) -> str:
    """``.<name>.pyteleport-tmp.<pid>.<random>``: a name no reader takes for
    the file, naming the process writing it (so that a later write can tell
    what a killed one left behind)."""
    return os.path.join(os.path.dirname(path),
                        f".{os.path.basename(path)}.{TMP_TAG}.{os.getpid()}.{os.urandom(6).hex()}")


def remove_stale_tmp(path: str) -> None:
    """Remove the temporary files that interrupted writes of ``path`` left:
    this user's, whose writing process is gone (on this machine).  A write
    still running keeps its own."""
    directory = os.path.dirname(path) or "."
    prefix = f".{os.path.basename(path)}.{TMP_TAG}."
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split(".")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue             # alive: a concurrent write of the same file
        except ProcessLookupError:
            pass
        except OSError:
            continue             # alive, another user's
        tmp = os.path.join(directory, name)
        try:
            st = os.lstat(tmp)
            if st.st_uid == os.geteuid() and st.st_mode & 0o170000 == 0o100000:
                os.unlink(tmp)
        except OSError:
            pass


def write_file(payload: Payload, path: str, label: str = "payload", sync: bool = True) -> None:
    """Write ``payload``, signed, to ``path`` atomically (a private temporary
    file in the same folder, renamed), with mode 0600; ``sync``: forced to disk
    first (fsync), so that the file survives a crash of the machine.  Raises
    OSError or TeleportError (no usable key); the temporary file never stays behind (one a
    killed write left is removed by the next write to ``path``)."""
    from .private import NOFOLLOW
    remove_stale_tmp(path)
    # what tempfile.mkstemp does, without importing tempfile (shutil, random, ...)
    tmp = _tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                 0o600)
    try:
        _write_fd(payload, fd, label, sync)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def overwrite_file(payload: Payload, path: str, label: str, sync: bool) -> None:
    """Write ``payload``, signed, over the file ``path`` (created if missing,
    mode 0600), in place: for a file nothing refers to while it is written (an
    MPI checkpoint's other slot).  Rewriting the pages a file already has
    spares freeing and allocating them again: for a 256 MiB file, as long
    as writing it.  A symbolic link, another user's or a loose file there is
    replaced, never written through.  Raises OSError or TeleportError, leaving
    the file damaged."""
    from .private import UnsafeFile, open_fd
    try:
        fd = open_fd(path, "checkpoint file", os.O_WRONLY | os.O_CREAT)
    except UnsafeFile:
        os.unlink(path)     # the name only: a link's target is not touched
        fd = open_fd(path, "checkpoint file", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    _write_fd(payload, fd, label, sync, truncate=True)


def _write_fd(payload: Payload, fd: int, label: str, sync: bool, truncate: bool = False) -> None:
    """Write ``payload``, signed, to the start of ``fd`` (closed after), with
    a progress display on a terminal; ``truncate``: cut what follows; ``sync``: fsync."""
    from .._progress import Progress
    with open(fd, "wb") as f:
        progress = Progress(payload.size, label)
        payload.write_to(f, progress, sign=True)
        progress.close()
        f.flush()
        if truncate:
            f.truncate()
        if sync:
            os.fsync(f.fileno())


class Header:
    __slots__ = ("format_version", "python", "bytecode_magic", "pyteleport_version", "checksum",
                 "key_id", "key_path")

    def __init__(self, format_version: int, python: tuple, bytecode_magic: bytes, version: str,
                 checksum: str, key_id: bytes = b"", key_path: str = ""):
        self.checksum = checksum
        self.key_id = key_id         # of a signed payload
        self.key_path = key_path     # the key it was verified with
        self.format_version = format_version
        self.python = python
        self.bytecode_magic = bytecode_magic
        self.pyteleport_version = version


def _bytes_left(stream) -> "int | None":
    """How many bytes a regular file has after the current position, or None
    for a pipe or socket (whose length is not known in advance)."""
    try:
        st = os.fstat(stream.fileno())
        if not (st.st_mode & 0o170000 == 0o100000):   # stat.S_ISREG without stat
            return None
        return st.st_size - stream.tell()
    except (AttributeError, OSError, ValueError):
        return None


class _Reader:
    def __init__(self, stream, progress=None):
        self.stream = stream
        self.checksum = None     # known once the header is read
        self.progress = progress
        # the lengths in a payload are only checked by the trailer's checksum, at
        # the end: a corrupted length must not make the reader allocate
        # terabytes first, so it is checked against what the file holds
        self.left = _bytes_left(stream)

    def exact(self, n: int, what: str, kind: bytes = KIND_BYTEARRAY):
        if self.left is not None:
            if n > self.left:
                raise PayloadError(f"truncated or corrupted payload: the {what} claims {n} bytes "
                                   f"but only {self.left} are left in the file")
            self.left -= n
        try:
            if n > sys.maxsize:
                raise MemoryError
            if kind == KIND_BYTES and n > 1:
                buf, view = _fresh_bytes(n)
            else:
                buf = _fresh_bytearray(n) if n >= RAW_ALLOC else bytearray(n)
                view = memoryview(buf)
        except (MemoryError, OverflowError):
            raise PayloadError(f"corrupted payload, or not enough memory here: the {what} "
                               f"claims {n} bytes, which cannot be allocated") from None
        got = 0
        while got < n:
            k = self.stream.readinto(view[got:got + CHUNK])
            if not k:
                raise PayloadError(f"truncated payload: the {what} ends after {got} of {n} bytes")
            if self.checksum is not None:
                self.checksum.update(view[got:got + k])
            got += k
            if self.progress is not None:
                self.progress(k)
        return buf


def _pythonapi(name: str):
    import ctypes
    func = getattr(ctypes.pythonapi, name)
    func.restype = ctypes.py_object
    func.argtypes = (ctypes.c_char_p, ctypes.c_ssize_t)
    return func


def _fresh_bytearray(n: int) -> bytearray:
    """A new ``bytearray`` of length ``n`` with the allocator's content:
    ``bytearray(n)`` zero-fills it, which for a large buffer faults every
    page in before the read writes it again (a fifth of the target's CPU
    time for a 1 GiB array over ssh)."""
    buf = _pythonapi("PyByteArray_FromStringAndSize")(None, n)
    if n >= HUGE_ALLOC:
        import ctypes
        _advise_huge_pages(ctypes.addressof(ctypes.c_char.from_buffer(buf)), n)
    return buf


def _fresh_bytes(n: int):
    """A new, unshared ``bytes`` of length ``n`` and a writable view of its
    storage, so that a large bytes object is read in place instead of being
    copied out of a bytearray.  Nothing else can see the object until the
    pickle hands it to the program."""
    import ctypes
    obj = _pythonapi("PyBytes_FromStringAndSize")(None, n)
    data = id(obj) + sys.getsizeof(b"") - 1   # offset of ob_sval: the header size
    if n >= HUGE_ALLOC:
        _advise_huge_pages(data, n)
    return obj, memoryview((ctypes.c_char * n).from_address(data)).cast("B")


def _advise_huge_pages(address: int, n: int) -> None:
    """Ask Linux for transparent huge pages under the 2 MiB-aligned part of
    ``n`` untouched bytes at ``address``: reading 64 MiB into them takes half
    the time (one page fault per 2 MiB instead of per 4 KiB).  Where THP is
    ``always`` this changes nothing, where it is ``never`` it is ignored.
    NumPy does the same for its large arrays, and the first such fault may
    wait for the kernel to compact memory; ``NUMPY_MADVISE_HUGEPAGE=0``,
    NumPy's switch, turns it off for both."""
    import mmap
    advice = getattr(mmap, "MADV_HUGEPAGE", None)      # Linux only
    if advice is None or os.environ.get("NUMPY_MADVISE_HUGEPAGE") == "0":
        return
    import ctypes
    huge = 2 << 20
    start = (address + huge - 1) & ~(huge - 1)
    end = (address + n) & ~(huge - 1)
    if end > start:
        madvise = ctypes.CDLL(None).madvise
        madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        madvise(start, end - start, advice)       # a failure only costs speed


def read_header(reader: _Reader, signed: bool = True, any_python: bool = False) -> Header:
    """The header; ``signed``: refuse a payload without a MAC (one in a file);
    ``any_python``: of another interpreter too (to be read, not run)."""
    if reader.left is not None and reader.left < HEADER.size:
        # an empty file, a few bytes: not a payload cut short (that has its header)
        raise PayloadError(f"not a pyteleport payload ({'an empty file' if not reader.left else f'only {reader.left} bytes'})")
    raw = reader.exact(HEADER.size, "header")
    magic, fmt, major, minor, bc_magic, checksum, n = HEADER.unpack(bytes(raw))
    if magic != MAGIC:
        raise PayloadError("not a pyteleport payload (bad magic bytes)")
    if fmt != FORMAT_VERSION:
        raise PayloadError(f"payload format {fmt} is not supported by this pyteleport "
                           f"(it reads format {FORMAT_VERSION}): resume it with the pyteleport "
                           f"version that wrote it")
    version_bytes = bytes(reader.exact(n, "header"))
    # not verified yet: shown in messages as printable text only
    version = "".join(c if c.isprintable() else "?" for c in version_bytes.decode("utf-8", "replace"))
    here = sys.version_info[:2]
    if (major, minor) != here and not any_python:
        raise PayloadError(f"payload was made by Python {major}.{minor} (pyteleport {version}); "
                           f"this is Python {here[0]}.{here[1]}: resume it with Python {major}.{minor}")
    if bc_magic != MAGIC_NUMBER and not any_python:
        raise PayloadError(f"payload was made by a Python {major}.{minor} build with another "
                           f"bytecode magic number; resume it with the same interpreter build")
    key_id, key_path = b"", ""
    if checksum == _checksum.MAC_BLAKE2B:
        from . import signing   # only here: a payload over a pipe does without
        key_id = bytes(reader.exact(signing.ID_SIZE, "header"))
        try:
            key, mine, key_path = signing.load_key()
        except signing.SigningError as e:
            raise PayloadError(f"cannot check the payload's signature: {e}") from None
        if not signing.equal(key_id, mine):
            raise PayloadError(
                f"the payload is signed with another key (id {key_id.hex()}) than yours "
                f"({key_path}, id {mine.hex()}): refusing to run it.  If you trust where it comes "
                f"from, name the key that signed it: {signing.KEY_ENV}=FILE or `pyteleport resume "
                "--key FILE PATH`")
        reader.checksum = signing.Mac(key)
    elif signed:
        raise PayloadError("the payload is not signed: pyteleport only runs payload files signed "
                           "with your key (see README, Security model)")
    else:
        try:
            reader.checksum = _checksum.of_kind(checksum)
        except ValueError:
            raise PayloadError(f"corrupted payload: unknown checksum kind {checksum}") from None
        except ImportError as e:
            raise PayloadError(f"this payload is checksummed with {_checksum.NAMES[checksum]}, which "
                               f"needs the {e.name} module here: pip install {e.name}") from None
    reader.checksum.update(raw)
    reader.checksum.update(version_bytes)
    reader.checksum.update(key_id)
    name = "blake2b-mac" if key_id else _checksum.NAMES[checksum]
    return Header(fmt, (major, minor), bc_magic, version, name, key_id, key_path)


def read(stream, progress=None, signed: bool = True, any_python: bool = False):
    """Read and verify a whole payload; returns ``(header, Payload)``.
    ``signed``: a MAC with this user's key is required (a payload from a
    file); else a checksum is accepted (a pipe only the source writes to)."""
    reader = _Reader(stream, progress)
    header = read_header(reader, signed, any_python)
    context = bytes(reader.exact(U64.unpack(reader.exact(8, "context length"))[0], "context"))
    state = bytes(reader.exact(U64.unpack(reader.exact(8, "state length"))[0], "state"))
    (count,) = U32.unpack(reader.exact(4, "buffer count"))
    buffers = []
    for i in range(count):
        head = reader.exact(9, f"buffer {i} length")
        kind, (n,) = bytes(head[:1]), U64.unpack(head[1:])
        if kind not in (KIND_BYTES, KIND_BYTEARRAY):
            raise PayloadError(f"corrupted payload: buffer {i} has an unknown kind")
        buffers.append(reader.exact(n, f"buffer {i}", kind))
    expected = reader.checksum.digest()
    size = len(TRAILER_MAGIC) + (len(expected) if header.key_id else 8)
    tail = stream.read(size)
    if len(tail) != size or not tail.startswith(TRAILER_MAGIC):
        raise PayloadError("truncated or corrupted payload: the trailer is missing")
    if header.key_id:
        if not _signing_equal(tail[len(TRAILER_MAGIC):], expected):
            raise PayloadError("the payload's signature does not match its content (corrupted, "
                               "or changed by someone without your key): refusing to run it")
    elif U64.unpack(tail[len(TRAILER_MAGIC):])[0] != expected:
        raise PayloadError("corrupted payload: checksum mismatch")
    if reader.left is not None and reader.left != size:
        raise PayloadError(f"corrupted payload: {reader.left - size} bytes follow its end")
    return header, Payload(context, state, buffers)


def _signing_equal(a: bytes, b: bytes) -> bool:
    from .signing import equal
    return equal(bytes(a), b)


def load_data(data: bytes):
    """Unpickle plain data (no class, no function, no persistent id):
    nothing in ``data`` can run."""
    import io
    from .cpickle import Unpickler

    class DataUnpickler(Unpickler):
        def find_class(self, module, name):
            raise PayloadError(f"the context names {module}.{name}: not plain data")

        def persistent_load(self, pid):
            raise PayloadError("the context holds a persistent id: not plain data")

    return DataUnpickler(io.BytesIO(data)).load()


def inspect(stream, signed: bool = False):
    """Read and verify a payload (signature if it has one, else checksum;
    ``signed``: a signature is required); returns ``(header, context,
    state length)``, the context read as plain data: nothing is executed."""
    header, ctx, payload = inspect_payload(stream, signed)
    return header, ctx, len(payload.state)


def inspect_payload(stream, signed: bool = False, any_python: bool = False):
    """As :func:`inspect`, returning ``(header, context, Payload)``;
    ``any_python``: a payload of another Python version too (to be read only)."""
    header, payload = read(stream, signed=signed, any_python=any_python)
    try:
        ctx = load_data(payload.context)
    except PayloadError:
        raise
    except Exception as e:    # the unpickler raises many kinds on bad input
        raise PayloadError(f"corrupted payload: its context cannot be read ({type(e).__name__})") from None
    if not isinstance(ctx, dict):
        raise PayloadError("corrupted payload: its context is not a mapping")
    return header, ctx, payload


def rewrite_python_version(path: str, version: tuple) -> None:
    """Test helper: rewrite the Python version of a payload file, fixing the
    checksum (the signature, with this user's key)."""
    from . import signing
    with open(path, "rb") as f:
        data = bytearray(f.read())
    magic, fmt, _, _, bc, checksum, n = HEADER.unpack_from(data)
    HEADER.pack_into(data, 0, magic, fmt, version[0], version[1], bc, checksum, n)
    if checksum == signing.MAC_BLAKE2B:
        digest = signing.Mac(signing.load_key()[0])
        digest.update(data[:-signing.MAC_SIZE - len(TRAILER_MAGIC)])
        data[-signing.MAC_SIZE:] = digest.digest()
    else:
        digest = _checksum.of_kind(checksum)
        digest.update(data[:-TRAILER_SIZE])
        data[-8:] = U64.pack(digest.digest())
    with open(path, "wb") as f:
        f.write(data)
