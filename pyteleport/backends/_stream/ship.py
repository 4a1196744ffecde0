"""Code that travels with the payload of the ``bash`` and ``ssh`` backends.

A payload refers to the program's modules by name: the target imports them
again.  This module finds what the program imported from outside the
interpreter's own directories (the script's folder, local packages on
``PYTHONPATH``...), grouped in *units* (a top-level module or package under
one ``sys.path`` entry), lists their files for the target to compare (path,
size, SHA-256), and writes the *bundle* of those the target lacks, together
with the files named by the ``ship`` option and, when the target cannot
import them, pyteleport itself, dill and bytecode (all pure Python).

Layout of the target's private ship directory:

* ``lib/``       pyteleport, dill, bytecode (first on ``sys.path``);
* ``explicit/``  what ``ship=[...]`` names (second on ``sys.path``);
* ``r<k>/``      units from the k-th shipped ``sys.path`` entry (placed just
  before that entry on ``sys.path``).

With the ship cache (``ship_cache``, on by default), the target keeps every
file it received in a per-user folder named by content (``_boot``'s
``~/.cache/pyteleport/ship/<sha256>``); the manifest names the SHA-256 of
each file that may travel, the target answers with those it holds (checked
against their hash), and the bundle then carries a reference instead of
their content.
"""
from __future__ import annotations

import importlib.machinery
import logging
import os
import stat
import struct
import sys
import types
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..._errors import TeleportError
from ..._core.paths import system_dirs
from . import boot as _boot

log = logging.getLogger("pyteleport")

# automatic shipping refuses more than this (explicit ``ship=`` has no limit)
MAX_FILES = 5000
MAX_BYTES = 64 << 20
# files of a package that are not code travel only up to this size each
MAX_DATA_FILE = 1 << 20

_CODE_SUFFIXES = tuple(importlib.machinery.SOURCE_SUFFIXES + importlib.machinery.EXTENSION_SUFFIXES)


@dataclass
class ShipFile:
    src: str         # absolute path here
    dest: str        # '/'-separated path in the target's ship directory
    size: int
    mode: int
    sha: str = ""    # SHA-256 of the content (hex), "" if not known


_sha_memo: Dict[Tuple[str, int, int], str] = {}


def file_sha(path: str) -> str:
    """SHA-256 of a file's content (hex), remembered while it is unchanged."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key not in _sha_memo:
        _sha_memo[key] = _boot.file_digest(path)
    return _sha_memo[key]


@dataclass
class Unit:
    """A top-level module or package the program imported from ``root``."""

    name: str
    root: str                 # the sys.path entry, as it is written there
    root_abs: str             # the same, absolute
    path: str                 # root/name (package folder) or the module's file
    files: List[Tuple[str, int, int]] = field(default_factory=list)   # (abs path, size, mode)
    force: bool = False       # lives in an earlier move's ship directory: always ship


@dataclass
class Plan:
    units: List[Unit]
    explicit: List[ShipFile]

    def offer_files(self) -> List[list]:
        """``[path, size, sha256, force]`` for every unit file (force: ship
        even if the target has the same file)."""
        out = []
        for unit in self.units:
            for path, size, _ in unit.files:
                out.append([path, size, file_sha(path), unit.force])
        return out


# --------------------------------------------------------------------------
# finding the program's own code


def _root_of(name: str, real_file: str) -> Optional[str]:
    """The folder the module ``name`` was imported from, given its file."""
    parts = name.split(".")
    directory, base = os.path.split(real_file)
    stem = base.split(".", 1)[0]
    if stem == "__init__":
        inner = parts
    elif stem == parts[-1]:
        inner = parts[:-1]
    else:
        return None
    for part in reversed(inner):
        directory, last = os.path.split(directory)
        if last != part:
            return None
    return directory


def _listed(directory: str) -> Iterable[Tuple[str, int, int]]:
    """Files of a package folder worth shipping: code, and small other files."""
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith(".") or fname.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(dirpath, fname)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if not fname.endswith(_CODE_SUFFIXES) and st.st_size > MAX_DATA_FILE:
                log.debug("not shipping %s: %d bytes, not code", path, st.st_size)
                continue
            yield path, st.st_size, st.st_mode


def _in_ship_dir(root: str) -> bool:
    d = os.path.realpath(root)
    for _ in range(2):
        if os.path.exists(os.path.join(d, _boot.SHIP_MARKER)):
            return True
        d = os.path.dirname(d)
    return False


def find_units(modules: Dict[str, types.ModuleType] = None, path: Sequence[str] = None) -> List[Unit]:
    """The program's own top-level modules and packages, with their files."""
    modules = sys.modules if modules is None else modules
    path = sys.path if path is None else path
    cwd = os.getcwd()
    roots = {}
    for entry in path:
        if isinstance(entry, str):
            roots.setdefault(os.path.realpath(os.path.join(cwd, entry)), entry)
    system = system_dirs()
    units: Dict[Tuple[str, str], Unit] = {}
    for name, module in list(modules.items()):
        if not isinstance(module, types.ModuleType) or name in ("__main__", "__mp_main__"):
            continue
        top = name.partition(".")[0]
        if top in _boot.PACKAGES:
            continue   # shipped by their own rule
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            continue
        real = os.path.realpath(file)
        if real.startswith(system):
            continue
        root = _root_of(name, real)
        entry = roots.get(root) if root is not None else None
        if entry is None:
            log.debug("not shipping module %s: cannot tell which sys.path entry %s comes from",
                      name, file)
            continue
        key = (root, top)
        if key in units:
            continue
        package = os.path.join(root, top)
        root_abs = os.path.normpath(os.path.join(cwd, entry))
        if os.path.isdir(package):
            unit = Unit(top, entry, root_abs, os.path.join(root_abs, top))
            unit.files = [(os.path.join(unit.path, os.path.relpath(p, package)), size, mode)
                          for p, size, mode in _listed(package)]
        elif "." not in name:
            st = os.stat(real)
            shown = os.path.join(root_abs, os.path.basename(real))
            unit = Unit(top, entry, root_abs, shown, [(shown, st.st_size, st.st_mode)])
        else:
            continue
        unit.force = _in_ship_dir(root)
        units[key] = unit
    return list(units.values())


def _check_limits(units: List[Unit]) -> None:
    count = sum(len(u.files) for u in units)
    size = sum(s for u in units for _, s, _ in u.files)
    if count > MAX_FILES or size > MAX_BYTES:
        biggest = sorted(units, key=lambda u: -sum(s for _, s, _ in u.files))[:3]
        names = ", ".join(f"{u.path} ({len(u.files)} files)" for u in biggest)
        raise TeleportError(
            f"the program's own code to ship is too big ({count} files, {size / 2**20:.0f} MiB; "
            f"largest: {names}): make it available on the target and pass ship=False, or name "
            f"what to ship with ship=[...]")


# --------------------------------------------------------------------------
# explicit ``ship=[...]``


def explicit_files(paths: Sequence[Union[str, os.PathLike]]) -> List[ShipFile]:
    """Files for ``ship=[...]``: a file goes to ``explicit/``; a package folder
    (with ``__init__.py``) to ``explicit/NAME/``; any other folder's content
    to ``explicit/`` (the folder is a source root)."""
    out: Dict[str, ShipFile] = {}
    for item in paths:
        path = os.path.abspath(os.fspath(item))
        if os.path.isfile(path):
            st = os.stat(path)
            dest = "explicit/" + os.path.basename(path)
            out[dest] = ShipFile(path, dest, st.st_size, st.st_mode, file_sha(path))
        elif os.path.isdir(path):
            base = "explicit/"
            if os.path.exists(os.path.join(path, "__init__.py")):
                base += os.path.basename(path.rstrip(os.sep)) + "/"
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
                for fname in sorted(filenames):
                    full = os.path.join(dirpath, fname)
                    if fname.endswith((".pyc", ".pyo")) or not os.path.isfile(full):
                        continue
                    st = os.stat(full)
                    dest = base + os.path.relpath(full, path).replace(os.sep, "/")
                    out[dest] = ShipFile(full, dest, st.st_size, st.st_mode, file_sha(full))
        else:
            raise TeleportError(f"ship: {os.fspath(item)!r} does not exist here "
                                f"(paths are relative to {os.getcwd()})")
    return list(out.values())


def make_plan(ship) -> Plan:
    """What may travel, from the ``ship`` option: True (the program's own code,
    found automatically), False (nothing of the program's), or a list of files
    and folders (shipped always, plus the automatic ones)."""
    if ship is False or ship is None:
        return Plan([], [])
    explicit = [] if ship is True else explicit_files(ship)
    units = find_units()
    named = {os.path.realpath(f.src) for f in explicit}
    units = [u for u in units if not all(os.path.realpath(p) in named for p, _, _ in u.files)]
    _check_limits(units)
    return Plan(units, explicit)


# --------------------------------------------------------------------------
# pyteleport, dill and bytecode


_digest_cache: Dict[str, str] = {}


def package_dir(name: str) -> str:
    """The folder of an installed package, without importing it (dill is
    imported only when a payload needs it)."""
    module = sys.modules.get(name)
    if module is not None:
        return os.path.dirname(os.path.abspath(module.__file__))
    import importlib.util
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise TeleportError(f"ship: cannot find the {name} package here")
    return os.path.abspath(list(spec.submodule_search_locations)[0])


def pyteleport_digest() -> str:
    """``_boot.tree_digest`` of this pyteleport (from :func:`package_files`,
    whose hashes the ship cache uses too: each file is read once)."""
    directory = package_dir("pyteleport")
    if directory not in _digest_cache:
        prefix = len("lib/pyteleport/")
        _digest_cache[directory] = _boot.digest_of_tree(
            (f.dest[prefix:], f.sha) for f in package_files("pyteleport"))
    return _digest_cache[directory]


def package_files(name: str) -> List[ShipFile]:
    """The ``.py`` files of an installed pure-Python package, for ``lib/NAME/``."""
    directory = package_dir(name)
    out = []
    for rel in _boot._py_files(directory):
        if name != "pyteleport" and rel.split("/")[0] == "tests":
            continue
        full = os.path.join(directory, *rel.split("/"))
        st = os.stat(full)
        out.append(ShipFile(full, f"lib/{name}/{rel}", st.st_size, st.st_mode, file_sha(full)))
    return out


# --------------------------------------------------------------------------
# the bundle


def write_bundle(out, files: List[ShipFile], cached: Iterable[str] = ()) -> Tuple[int, int]:
    """Stream ``files`` as the bundle the target's boot reads
    (``_boot._receive_bundle``); those whose hash is in ``cached`` go as a
    reference to the target's ship cache.  Returns the files and the bytes
    sent as content."""
    cached = set(cached)
    out.write(_boot.BUNDLE_MAGIC + struct.pack(">I", len(files)))
    sent = sent_bytes = 0
    for f in files:
        name = f.dest.encode("utf-8", "surrogateescape")
        sha = bytes.fromhex(f.sha) if f.sha else bytes(32)
        if f.sha and f.sha in cached:
            out.write(struct.pack(">H", len(name)) + name + struct.pack(">IQ", f.mode & 0o777, f.size)
                      + _boot.CACHED + sha)
            continue
        try:
            with open(f.src, "rb") as src:
                size = os.fstat(src.fileno()).st_size
                out.write(struct.pack(">H", len(name)) + name + struct.pack(">IQ", f.mode & 0o777, size)
                          + _boot.CONTENT + sha)
                left = size
                while left:
                    chunk = src.read(min(left, 1 << 20))
                    if not chunk:
                        raise TeleportError(f"ship: {f.src} shrank while it was being sent")
                    out.write(chunk)
                    left -= len(chunk)
        except OSError as e:
            raise TeleportError(f"ship: cannot read {f.src}: {e.strerror or e}") from None
        sent += 1
        sent_bytes += size
    return sent, sent_bytes
