"""What the snapshot and the morph compiler derive from a code object, kept
on disk between runs.

Compiling a morph template needs the ``bytecode`` package, and analysing a
code object's stack needs ``dis``; importing them costs a move milliseconds
to tens of milliseconds.  Both results depend only on the code object and a
few plain facts (for a template: the shape of the frame's state, see
``morph._shape``), so they are stored under a key made of both, and a later
run that moves the same code (the same script stopping at the same call)
reads them back instead.

Location: ``$PYTELEPORT_CACHE_DIR``, else ``$XDG_CACHE_HOME/pyteleport/templates``,
else ``~/.cache/pyteleport/templates``, in a sub-folder per interpreter
(implementation, version, bytecode magic number), pyteleport version and
compiler revision (the size and mtime of the compiler's own source files), so
no other Python and no other pyteleport ever reads an entry.
``PYTELEPORT_NO_CACHE=1`` turns the cache off.

Entries are written atomically (a private temporary file renamed into place)
into a folder that only this user can write (else the cache is not used: its
entries hold code), and checked when read (a checksum over the entry, the full key stored inside
it); the callers check the shape of what they get back.  An entry that fails
a check is ignored, and computed and written afresh.  Nothing here ever
raises: the cache can only make a move faster, never break it.
"""
from __future__ import annotations

import marshal
import os
import sys
import types
# zlib, not hashlib: the payload needs zlib anyway, and every extension module
# loaded costs a move time.  The checksums only name files and detect damage:
# an entry matches only if the full key stored in it is equal
from zlib import adler32, crc32

from .. import _log
from .._payload.container import MAGIC_NUMBER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional

ENTRY_MAGIC = b"PYTLTPL4"     # 4: the compiler moved into pyteleport/_core/
# the modules whose source decides what an entry holds
_COMPILER_SOURCES = ("morph.py", "prologue.py", "morph_build.py", "cpython.py", "stack_analysis.py",
                     "compile_cache.py")

_directory = None      # resolved once per process and environment
_directory_env = None
_checked_folder = None  # the folder found private to this user
_marshalled = {}       # id(code) -> (code, bytes): a code is marshalled once per process
_MARSHALLED_SIZE = 256


def _compiler_revision() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    stamps = []
    for name in _COMPILER_SOURCES:
        try:
            st = os.stat(os.path.join(here, name))
            stamps.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            stamps.append(f"{name}:?")
    return _name(";".join(stamps).encode())


def _name(data: bytes) -> str:
    return f"{crc32(data):08x}{adler32(data):08x}{len(data):x}"


def directory() -> Optional[str]:
    """The folder of this interpreter's entries, or None when the cache is off."""
    global _directory, _directory_env
    env = (os.environ.get("PYTELEPORT_NO_CACHE"), os.environ.get("PYTELEPORT_CACHE_DIR"),
           os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"))
    if env == _directory_env and _directory is not None:
        return _directory or None
    _directory_env = env
    no_cache, base, xdg, _ = env
    if no_cache and no_cache.strip().lower() not in ("0", "false", "no", ""):
        _directory = ""
        return None
    if not base:
        root = xdg or os.path.join(os.path.expanduser("~"), ".cache")
        base = os.path.join(root, "pyteleport", "templates")
    from .. import __version__
    impl = sys.implementation
    tag = (f"{impl.cache_tag or impl.name}-{MAGIC_NUMBER.hex()}-pyteleport{__version__}-"
           f"{_compiler_revision()}")
    _directory = os.path.join(os.path.abspath(base), tag)
    return _directory


def _marshal(code: types.CodeType) -> Optional[bytes]:
    hit = _marshalled.get(id(code))
    if hit is not None and hit[0] is code:
        return hit[1]
    try:
        # version 2: no back-references, whose use depends on reference counts
        data = marshal.dumps(code, 2)
    except ValueError:     # constants marshal cannot write (a morph moved again)
        data = None
    if len(_marshalled) >= _MARSHALLED_SIZE:
        _marshalled.clear()
    _marshalled[id(code)] = (code, data)
    return data


def _key(kind: str, code: types.CodeType, facts: tuple) -> Optional[bytes]:
    data = _marshal(code)
    if data is None:
        return None
    return kind.encode() + b"\0" + repr(facts).encode() + b"\0" + data


def _path(folder: str, key: bytes) -> str:
    return os.path.join(folder, _name(key))


def _private(folder: str) -> bool:
    """Whether only this user can have written ``folder``'s entries: they
    hold code that the resumed program runs."""
    global _checked_folder
    if _checked_folder == folder:
        return True
    try:
        st = os.stat(folder)
    except OSError:
        return False
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        _log.debug("pyteleport cache: not using %s: it is not private to this user", folder)
        return False
    _checked_folder = folder
    return True


def _read_private(path: str) -> Optional[bytes]:
    """The content of the entry ``path`` if it is a regular file of this
    user's that others cannot write (never through a link), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000 or st.st_uid != os.getuid() or st.st_mode & 0o022:
            _log.debug("pyteleport cache: not using %s: it is not this user's private file", path)
            return None
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError:
        return None
    finally:
        os.close(fd)


def get(kind: str, code: types.CodeType, facts: tuple = ()) -> Any:
    """The value stored for (``kind``, ``code``, ``facts``), or None.
    ``facts`` is a tuple of plain values (its repr is part of the key)."""
    folder = directory()
    key = _key(kind, code, facts) if folder is not None else None
    if key is None or not _private(folder):
        return None
    path = _path(folder, key)
    data = _read_private(path)
    if data is None:
        return None
    head = len(ENTRY_MAGIC) + 4
    body = data[head:]
    if (len(data) < head or not data.startswith(ENTRY_MAGIC)
            or crc32(body).to_bytes(4, "little") != data[len(ENTRY_MAGIC):head]):
        _log.debug("pyteleport cache: ignoring damaged entry %s", path)
        return None
    try:
        stored_key, value = marshal.loads(body)
    except Exception:   # marshal raises several types on bad input
        return None
    if stored_key != key:
        _log.debug("pyteleport cache: ignoring entry %s of another key", path)
        return None
    return value


def put(kind: str, code: types.CodeType, facts: tuple, value: Any) -> None:
    """Store ``value`` (anything marshal writes) for later runs; silently
    skipped when that is not possible."""
    folder = directory()
    key = _key(kind, code, facts) if folder is not None else None
    if key is None:
        return
    try:
        body = marshal.dumps((key, value), 2)
    except ValueError:
        return
    data = ENTRY_MAGIC + crc32(body).to_bytes(4, "little") + body
    path = _path(folder, key)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        if not _private(folder):
            return
        try:
            os.unlink(tmp)      # a killed write's (same pid), or a planted link
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        _log.debug("pyteleport cache: cannot write %s: %s", path, e)
        try:
            os.unlink(tmp)
        except OSError:
            pass
