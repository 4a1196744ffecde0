"""Signing the payloads that travel through files: a keyed BLAKE2b MAC with a
per-user secret.

A payload in a file (a checkpoint, a Slurm or mpirun stage, an MPI
checkpoint directory) is code that ``pyteleport resume`` runs, and anyone who
can write (or plant) such a file could otherwise have it run: a checksum is
recomputable.  So those payloads carry a MAC made with a secret only this
user can read, and the reader checks it before a single byte is unpickled.

The secret: ``$PYTELEPORT_KEY_FILE`` if set, else
``$XDG_CONFIG_HOME/pyteleport/secret`` (default ``~/.config``), 32 random
bytes in hex, created on first signing with mode 0600 (written to a private
temporary file, then hard-linked into place: the file appears whole or not
at all, and two processes creating it at once end up with the same one).
On a cluster the home directory is shared, so the job's nodes have it.

Keyed BLAKE2b (``_blake2``, loaded directly: ``hashlib`` pulls in OpenSSL,
tens of milliseconds in every resumed process) is the fastest MAC the
standard library has; the payload's header carries the key's id (a hash of
it) so that a payload signed with another key is refused at once, by name.
"""
import os

KEY_ENV = "PYTELEPORT_KEY_FILE"
KEY_BYTES = 32
MAC_SIZE = 32
ID_SIZE = 8
from .checksum import MAC_BLAKE2B     # the "checksum" kind in the payload header

_keys = {}             # path -> (key, key id), read once per process


class SigningError(Exception):
    """The key cannot be used; the message is one line for the user."""


def _blake2b(data=b"", **kwargs):
    try:
        from _blake2 import blake2b
    except ImportError:    # pragma: no cover (an interpreter without the module)
        from hashlib import blake2b
    return blake2b(data, **kwargs)


def key_path(environ=None) -> str:
    """Where this process's key is (it may not exist yet)."""
    environ = os.environ if environ is None else environ
    named = environ.get(KEY_ENV)
    if named:
        return os.path.abspath(os.path.expanduser(named))
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "pyteleport", "secret")


def key_id(key: bytes) -> bytes:
    return _blake2b(key, digest_size=ID_SIZE, person=b"pytl-key-id").digest()


def _read(path: str) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise SigningError(f"cannot read the signing key {path}: {e.strerror}"
                           + (" (it is a symbolic link)" if os.path.islink(path) else "")) from None
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000:
            raise SigningError(f"the signing key {path} is not a regular file")
        if st.st_uid != os.geteuid():
            raise SigningError(f"the signing key {path} belongs to uid {st.st_uid}, not to you "
                               f"(uid {os.geteuid()}): remove it, or `chown {os.geteuid()} {path}`")
        if st.st_mode & 0o077:
            raise SigningError(f"the signing key {path} is readable or writable by others (mode "
                               f"{st.st_mode & 0o777:04o}): `chmod 600 {path}`")
        text = os.read(fd, 4 * KEY_BYTES)
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise SigningError(f"the signing key {path} is damaged (not {KEY_BYTES} bytes in hex): "
                           "remove it to have a new one made (payloads signed with it are then refused)")
    return key


def _create(path: str) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = os.path.join(directory, f".secret.{os.getpid()}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            os.write(fd, (os.urandom(KEY_BYTES).hex() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)      # atomic, and never over a key another process made first
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def load_key(create: bool = False):
    """``(key, key id, path)`` of this process's key; with ``create``, made
    if missing.  Raises SigningError."""
    path = key_path()
    hit = _keys.get(path)
    if hit is not None:
        return hit
    try:
        key = _read(path)
    except FileNotFoundError:
        if not create:
            raise SigningError(f"there is no signing key at {path} to check the payload's "
                               f"signature with (see README, Security model; {KEY_ENV} names another key)") from None
        try:
            _create(path)
            key = _read(path)
        except OSError as e:
            raise SigningError(f"cannot create the signing key {path}: {e.strerror or e}") from None
    found = (key, key_id(key), path)
    _keys[path] = found
    return found


class Mac:
    """The payload "checksum" of files: keyed BLAKE2b over everything before
    the trailer; ``digest()`` is the 32-byte MAC."""
    kind = MAC_BLAKE2B
    size = MAC_SIZE
    # _blake2 releases the GIL on large updates: a big buffer is hashed in a
    # thread beside its write
    threaded = True

    def __init__(self, key: bytes):
        self._hash = _blake2b(key=key, digest_size=MAC_SIZE, person=b"pytl-payload")

    def update(self, data) -> None:
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.digest()


def equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison (``hmac.compare_digest``, without importing hmac)."""
    from _operator import _compare_digest
    return _compare_digest(a, b)
