"""The payload format: what travels from the source to the target.

Layout (little-endian)::

    header   magic b"PYTLPORT"  u16 format  u8 py_major  u8 py_minor
             4s bytecode magic  u8 checksum kind (see _checksum)
             u8 n  n bytes pyteleport version
    context  u64 n, n bytes     plain pickle: process context and manifest
    state    u64 n, n bytes     dill pickle protocol 5: the program
    buffers  u32 count, then per buffer: u8 kind (b"a" bytearray, b"b" bytes),
             u64 n, n bytes (out-of-band pickle buffers)
    trailer  b"PTEND" u64 checksum of everything before the trailer

The header is checked before anything else is read, and the checksum before
anything is unpickled, so a payload from another Python, a truncated or a
corrupted file is refused without executing any of it.
"""
from __future__ import annotations

import os
import sys
from . import _checksum
from ._cpickle import PickleBuffer, loads as pickle_loads

# importlib.util.MAGIC_NUMBER without importing importlib.util (milliseconds
# in every resumed process): the frozen bootstrap module is always loaded
MAGIC_NUMBER = getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", None)
if MAGIC_NUMBER is None:   # pragma: no cover (an unusual import system)
    from importlib.util import MAGIC_NUMBER

# The restoring side imports this module: standard library only, and no
# typing or dataclasses (they cost every resumed process milliseconds).

MAGIC = b"PYTLPORT"
FORMAT_VERSION = 2


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
TRAILER_SIZE = len(TRAILER_MAGIC) + 8
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
    from . import __version__
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
        return (HEADER.size + len(_pyteleport_version().encode()) + 8 + len(self.context)
                + 8 + len(self.state) + 4 + sum(9 + memoryview(b).nbytes for b in self.buffers)
                + TRAILER_SIZE)

    def write_to(self, out, progress=None, checksum=None) -> None:
        """Stream the payload to ``out`` without copying the buffers;
        ``checksum``: a :mod:`_checksum` class (default: the fastest here)."""
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
                        MAGIC_NUMBER, digest.kind, len(version)) + version)
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
        trailer = TRAILER_MAGIC + U64.pack(digest.digest())
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
    from ._errors import TeleportError
    raise TeleportError(f"{what}: {name} must be true or false (1/0), not {value!r}")


def write_file(payload: Payload, path: str, label: str = "payload", sync: bool = True) -> None:
    """Write ``payload`` to ``path`` atomically (a private temporary file in
    the same folder, renamed), with mode 0600; ``sync``: forced to disk
    first (fsync), so that the file survives a crash of the machine.  Raises
    OSError; the temporary file never stays behind."""
    directory = os.path.dirname(os.path.abspath(path))
    # what tempfile.mkstemp does, without importing tempfile (shutil, random, ...)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
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
    """Write ``payload`` over the file ``path`` (created if missing, mode
    0600), in place: for a file nothing refers to while it is written (an
    MPI checkpoint's other slot).  Rewriting the pages a file already has
    spares freeing and allocating them again: for a 256 MiB file, as long
    as writing it.  Raises OSError, leaving the file damaged."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    _write_fd(payload, fd, label, sync, truncate=True)


def _write_fd(payload: Payload, fd: int, label: str, sync: bool, truncate: bool = False) -> None:
    """Write ``payload`` to the start of ``fd`` (closed after), with a progress
    display on a terminal; ``truncate``: cut what follows; ``sync``: fsync."""
    from ._progress import Progress
    with open(fd, "wb") as f:
        progress = Progress(payload.size, label)
        payload.write_to(f, progress)
        progress.close()
        f.flush()
        if truncate:
            f.truncate()
        if sync:
            os.fsync(f.fileno())


class Header:
    __slots__ = ("format_version", "python", "bytecode_magic", "pyteleport_version", "checksum")

    def __init__(self, format_version: int, python: tuple, bytecode_magic: bytes, version: str,
                 checksum: str):
        self.checksum = checksum
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


def read_header(reader: _Reader) -> Header:
    raw = reader.exact(HEADER.size, "header")
    magic, fmt, major, minor, bc_magic, checksum, n = HEADER.unpack(bytes(raw))
    if magic != MAGIC:
        raise PayloadError("not a pyteleport payload (bad magic bytes)")
    if fmt != FORMAT_VERSION:
        raise PayloadError(f"payload format {fmt} is not supported by this pyteleport "
                           f"(it reads format {FORMAT_VERSION}): resume it with the pyteleport "
                           f"version that wrote it")
    version_bytes = bytes(reader.exact(n, "header"))
    version = version_bytes.decode("utf-8", "replace")
    here = sys.version_info[:2]
    if (major, minor) != here:
        raise PayloadError(f"payload was made by Python {major}.{minor} (pyteleport {version}); "
                           f"this is Python {here[0]}.{here[1]}: resume it with Python {major}.{minor}")
    if bc_magic != MAGIC_NUMBER:
        raise PayloadError(f"payload was made by a Python {major}.{minor} build with another "
                           f"bytecode magic number; resume it with the same interpreter build")
    try:
        reader.checksum = _checksum.of_kind(checksum)
    except ValueError:
        raise PayloadError(f"corrupted payload: unknown checksum kind {checksum}") from None
    except ImportError as e:
        raise PayloadError(f"this payload is checksummed with {_checksum.NAMES[checksum]}, which needs "
                           f"the {e.name} module here: pip install {e.name}") from None
    reader.checksum.update(raw)
    reader.checksum.update(version_bytes)
    return Header(fmt, (major, minor), bc_magic, version, _checksum.NAMES[checksum])


def read(stream, progress=None):
    """Read and verify a whole payload; returns ``(header, Payload)``."""
    reader = _Reader(stream, progress)
    header = read_header(reader)
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
    tail = stream.read(TRAILER_SIZE)
    if len(tail) != TRAILER_SIZE or not tail.startswith(TRAILER_MAGIC):
        raise PayloadError("truncated or corrupted payload: the trailer is missing")
    if U64.unpack(tail[len(TRAILER_MAGIC):])[0] != expected:
        raise PayloadError("corrupted payload: checksum mismatch")
    return header, Payload(context, state, buffers)


def read_context(stream):
    """Header and context only (for inspection; nothing is executed)."""
    reader = _Reader(stream)
    header = read_header(reader)
    context = bytes(reader.exact(U64.unpack(reader.exact(8, "context length"))[0], "context"))
    state_len = U64.unpack(reader.exact(8, "state length"))[0]
    return header, pickle_loads(context), state_len


def rewrite_python_version(path: str, version: tuple) -> None:
    """Test helper: rewrite the Python version of a payload file, fixing the checksum."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    magic, fmt, _, _, bc, checksum, n = HEADER.unpack_from(data)
    HEADER.pack_into(data, 0, magic, fmt, version[0], version[1], bc, checksum, n)
    digest = _checksum.of_kind(checksum)
    digest.update(data[:-TRAILER_SIZE])
    data[-8:] = U64.pack(digest.digest())
    with open(path, "wb") as f:
        f.write(data)
