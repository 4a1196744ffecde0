"""Compiled morph templates kept on disk between runs.

Compiling a template needs the ``bytecode`` package, whose import alone costs
a move tens of milliseconds.  A template depends only on the frame's code
object and the shape of its state (see ``_morph._shape``), so it is stored
under a key made of both, and a later run that moves a frame of the same
shape (the same script stopping at the same call) reads it back instead.

Location: ``$PYTELEPORT_CACHE_DIR``, else ``$XDG_CACHE_HOME/pyteleport/templates``,
else ``~/.cache/pyteleport/templates``, in a sub-folder per interpreter
(implementation, version, bytecode magic number), pyteleport version and
compiler revision (the size and mtime of the compiler's own source files), so
no other Python and no other pyteleport ever reads an entry.
``PYTELEPORT_NO_CACHE=1`` turns the cache off.

Entries are written atomically (a private temporary file renamed into place)
and checked when read (a checksum over the entry, the full key stored inside
it); an entry that fails a check is ignored and compiled afresh.  Nothing here
ever raises: the cache can only make a move faster, never break it.
"""
from __future__ import annotations

import marshal
import os
import sys
import types

from . import _log
from ._payload import MAGIC_NUMBER

try:
    from _blake2 import blake2b    # what hashlib.blake2b is, without hashlib's imports
except ImportError:                # pragma: no cover (builds without _blake2)
    from hashlib import blake2b

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional
    from ._morph import Template

ENTRY_MAGIC = b"PYTLTPL1"
DIGEST_SIZE = 32
# the modules whose source decides what a template holds
_COMPILER_SOURCES = ("_morph.py", "_morph_build.py", "_cpython.py", "_stack_analysis.py",
                     "_template_cache.py")

_directory = None      # resolved once per process and environment
_directory_env = None


def _compiler_revision() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    h = blake2b(digest_size=8)
    for name in _COMPILER_SOURCES:
        try:
            st = os.stat(os.path.join(here, name))
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns};".encode())
        except OSError:
            h.update(f"{name}:?;".encode())
    return h.hexdigest()


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
    from . import __version__
    impl = sys.implementation
    tag = (f"{impl.cache_tag or impl.name}-{MAGIC_NUMBER.hex()}-pyteleport{__version__}-"
           f"{_compiler_revision()}")
    _directory = os.path.join(os.path.abspath(base), tag)
    return _directory


def _key(code: types.CodeType, shape: tuple) -> Optional[bytes]:
    try:
        # version 2: no back-references, whose use depends on reference counts
        body = marshal.dumps(code, 2)
    except ValueError:     # constants marshal cannot write (a morph moved again)
        return None
    return repr(shape).encode() + b"\0" + body


def _path(folder: str, key: bytes) -> str:
    return os.path.join(folder, blake2b(key, digest_size=16).hexdigest())


def load(code: types.CodeType, shape: tuple) -> Optional[Template]:
    """The stored template of ``code`` in state ``shape``, or None."""
    folder = directory()
    if folder is None:
        return None
    key = _key(code, shape)
    if key is None:
        return None
    path = _path(folder, key)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    template = _decode(data, key, code)
    if template is None:
        _log.debug("template cache: ignoring damaged entry %s", path)
    return template


def _decode(data: bytes, key: bytes, code: types.CodeType) -> Optional[Template]:
    head = len(ENTRY_MAGIC) + DIGEST_SIZE
    if len(data) < head or not data.startswith(ENTRY_MAGIC):
        return None
    body = data[head:]
    if blake2b(body, digest_size=DIGEST_SIZE).digest() != data[len(ENTRY_MAGIC):head]:
        return None
    try:
        stored_key, bare, positions, freevars = marshal.loads(body)
    except Exception:   # marshal raises several types on bad input
        return None
    if (stored_key != key or type(bare) is not types.CodeType or type(positions) is not tuple
            or type(freevars) is not tuple or freevars != code.co_freevars + code.co_cellvars
            or bare.co_name != code.co_name):
        return None
    n = len(bare.co_consts)
    for pair in positions:
        if (type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not int
                or type(pair[1]) is not int or not 0 <= pair[0] < n):
            return None
    from ._morph import Template
    return Template(bare, positions, freevars)


def store(code: types.CodeType, shape: tuple, template: Template) -> None:
    """Keep ``template`` for later runs (silently skipped when impossible)."""
    folder = directory()
    if folder is None:
        return
    key = _key(code, shape)
    if key is None:
        return
    try:
        body = marshal.dumps((key, template.bare, template.positions, template.freevars), 2)
    except ValueError:
        return
    data = ENTRY_MAGIC + blake2b(body, digest_size=DIGEST_SIZE).digest() + body
    path = _path(folder, key)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        _log.debug("template cache: cannot write %s: %s", path, e)
        try:
            os.unlink(tmp)
        except OSError:
            pass
