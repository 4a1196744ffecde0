#!/usr/bin/env python3
"""Provision a private CPython 3.14 / 3.15 from Debian unstable's binary packages.

Usage::

    python3 .ci/debian_python.py 3.14 [3.15 ...]   # provision (cached), print bin dirs
    python3 .ci/debian_python.py --check 3.14      # exit 0 if cached, 1 if not; no network
    python3 .ci/debian_python.py --force 3.15      # rebuild even when cached
    python3 .ci/debian_python.py --dev 3.15        # also unpack the C headers (python3.X-dev)

Each interpreter gets its own root, ``<cache>/<X.Y>/``, holding the unpacked
packages (``usr/...``) and ``bin/pythonX.Y``, a symlink to ``usr/bin/pythonX.Y``:
the one file meant to go on PATH.  ``<cache>`` is ``$PYTELEPORT_PYTHONS`` when
set, else ``/var/cache/pyteleport/pythons`` for root, else
``${XDG_CACHE_HOME:-~/.cache}/pyteleport/pythons``.  The last line printed on
stdout for each version is its bin dir.

Nothing is installed on the system and the machine's apt configuration is not
changed: apt runs with a private sources list (unstable, signed by the
machine's Debian archive keyring, from the mirror the machine's own sources
use, or ``$PYTELEPORT_DEBIAN_MIRROR``), private package lists, cache and an
empty dpkg status, and only *downloads* (``apt-get download``); the packages
are unpacked with ``dpkg-deb -x``.  Unstable's packages are built against a
newer C library than Debian 12's, so that C library is unpacked too and
``patchelf`` points the interpreter at the private root's loader
(``--set-interpreter``) and every ELF object of the interpreter at the private
libraries (``--force-rpath --set-rpath``: DT_RPATH on the executable also
covers what the libraries and dlopen'd extension modules need).  No
``LD_LIBRARY_PATH`` is involved, so the system programs the interpreter starts
(``ssh``, ``sbatch``, ``mpiexec``, ``bash``) run with the system's C library
as usual.  The root is absolute-path bound: move it and it is rebuilt.

The packages: ``pythonX.Y``, ``pythonX.Y-minimal``, ``libpythonX.Y-minimal``,
``libpythonX.Y-stdlib``, ``pythonX.Y-venv``, ``python3-pip-whl`` and
``python3-setuptools-whl`` (the wheels ``ensurepip`` installs into a venv),
plus the closure of their ``lib*`` dependencies in unstable (``libc6``,
``libssl3t64``, ``libffi8``, ``libsqlite3-0``, ...) and ``libstdc++6``.
Data-only dependencies (tzdata, media-types, netbase, ca-certificates) come
from the machine.  A build is checked before it is kept: it must import ssl,
ctypes, sqlite3, venv, zlib, lzma, bz2, readline, decimal, uuid, and create a
venv whose pip runs.  A build goes to a temporary directory and is renamed
into place, under a lock, so concurrent runs are safe.

Needs: apt-get, apt-cache, dpkg-deb, patchelf, and Debian's archive keyring
with unstable's signing keys (debian-archive-keyring).  As root, a missing
patchelf is installed from the machine's own (stable) sources.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

# Bump when the layout or the patching changes: cached roots of another
# revision are rebuilt.
REVISION = 1
VERSIONS = ("3.14", "3.15")
SUITE = "unstable"
ARCH_TRIPLET = "x86_64-linux-gnu"
KEYRINGS = (
    "/usr/share/keyrings/debian-archive-keyring.gpg",
    "/usr/share/keyrings/debian-archive-keyring.pgp",
)
# Not libraries: the machine's copies (or none) do.
SKIP_DEPS = {"tzdata", "media-types", "mime-support", "netbase", "ca-certificates",
             "readline-common", "openssl-provider-legacy", "debconf"}
EXTRA_PACKAGES = ("libstdc++6",)
CHECK_IMPORTS = "ssl, ctypes, sqlite3, venv, zlib, lzma, bz2, readline, decimal, uuid, ensurepip, hashlib, curses, dbm, json, zoneinfo"
STAMP = ".pyteleport-python.json"


class ProvisionError(Exception):
    pass


_T0 = time.monotonic()


def log(msg: str) -> None:
    print("debian_python: [%5.1f s] %s" % (time.monotonic() - _T0, msg), file=sys.stderr, flush=True)


def cache_dir() -> str:
    env = os.environ.get("PYTELEPORT_PYTHONS")
    if env:
        return os.path.abspath(env)
    if os.geteuid() == 0:
        return "/var/cache/pyteleport/pythons"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "pyteleport", "pythons")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    kw.setdefault("text", True)
    try:
        return subprocess.run(cmd, **kw)
    except subprocess.CalledProcessError as e:
        out = (e.stdout or "") + (e.stderr or "")
        raise ProvisionError("%s failed (exit %s):\n%s" % (" ".join(cmd), e.returncode, out[-3000:])) from None


# ---------------------------------------------------------------- checks


def is_cached(root: str, version: str) -> bool:
    try:
        with open(os.path.join(root, STAMP)) as f:
            stamp = json.load(f)
    except (OSError, ValueError):
        return False
    return (
        stamp.get("revision") == REVISION
        and stamp.get("root") == root
        and os.access(os.path.join(root, "bin", "python" + version), os.X_OK)
    )


def missing_tools() -> list[str]:
    return [t for t in ("apt-get", "apt-cache", "dpkg-deb", "patchelf") if not shutil.which(t)]


def ensure_tools() -> None:
    missing = missing_tools()
    if missing == ["patchelf"] and os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing patchelf from the machine's own apt sources")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "patchelf"],
            env=env, capture_output=True)
        missing = missing_tools()
    if missing:
        hint = ""
        if "patchelf" in missing and "apt-get" not in missing:
            hint = " (as root: apt-get install patchelf)"
        raise ProvisionError(
            "missing tools: %s%s.  This provisioner needs Debian's apt-get, apt-cache, "
            "dpkg-deb and patchelf; alternatively install CPython %s yourself (pyenv, "
            "conda, ...) so that it is found on PATH or under pyenv."
            % (", ".join(missing), hint, "/".join(VERSIONS)))
    if not any(os.path.exists(k) for k in KEYRINGS):
        raise ProvisionError(
            "Debian's archive keyring is missing (%s): install debian-archive-keyring"
            % KEYRINGS[0])


def debian_mirror() -> str:
    """The Debian mirror the machine's own apt sources use (no host is hard-coded)."""
    env = os.environ.get("PYTELEPORT_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    texts = []
    for path in ["/etc/apt/sources.list"] + sorted(
            glob.glob("/etc/apt/sources.list.d/*.list") + glob.glob("/etc/apt/sources.list.d/*.sources")):
        try:
            with open(path) as f:
                texts.append(f.read())
        except OSError:
            pass
    uris = []
    for text in texts:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            m = re.match(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s", line + " ")
            if m:
                uris.append(m.group(1))
            m = re.match(r"URIs:\s*(.+)", line)
            if m:
                uris.extend(m.group(1).split())
    for uri in uris:
        u = uri.rstrip("/")
        if re.match(r"(https?|file)://", u) and u.endswith("/debian"):
            return u
    raise ProvisionError(
        "found no Debian mirror in the machine's apt sources (a 'deb' URI ending in "
        "/debian); set PYTELEPORT_DEBIAN_MIRROR to one")


# ---------------------------------------------------------------- apt


class PrivateApt:
    """apt-get / apt-cache on unstable with private state; never touches the system's."""

    def __init__(self, base: str):
        self.base = base
        for d in ("lists/partial", "cache/archives/partial", "etc/sources.list.d",
                  "etc/preferences.d", "debs"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        keyring = next(k for k in KEYRINGS if os.path.exists(k))
        sources = "deb [signed-by=%s] %s %s main\n" % (keyring, debian_mirror(), SUITE)
        path = os.path.join(base, "etc/sources.list")
        try:
            with open(path) as f:
                same = f.read() == sources
        except OSError:
            same = False
        if not same:  # rewriting it would invalidate apt's binary cache
            with open(path, "w") as f:
                f.write(sources)
        open(os.path.join(base, "status"), "a").close()
        self.opts = []
        for k, v in (
            ("Dir::Etc::sourcelist", "etc/sources.list"),
            ("Dir::Etc::sourceparts", "etc/sources.list.d"),
            ("Dir::Etc::preferences", "etc/preferences"),
            ("Dir::Etc::preferencesparts", "etc/preferences.d"),
            ("Dir::State::Lists", "lists"),
            ("Dir::State::status", "status"),
            ("Dir::Cache", "cache"),
        ):
            self.opts += ["-o", "%s=%s" % (k, os.path.join(base, v))]
        # keep apt's binary cache (images often turn it off): 2.5 s -> 0.05 s a call
        self.opts += ["-o", "Dir::Cache::pkgcache=pkgcache.bin",
                      "-o", "Dir::Cache::srcpkgcache=srcpkgcache.bin"]
        self.opts += ["-o", "Debug::NoLocking=1", "-o", "APT::Get::List-Cleanup=0"]
        if os.geteuid() == 0:
            # the private dirs need not be readable by _apt
            self.opts += ["-o", "APT::Sandbox::User=root"]

    def update(self, max_age: float = 6 * 3600) -> None:
        lists = glob.glob(os.path.join(self.base, "lists", "*_Packages*"))
        if lists and time.time() - min(os.path.getmtime(p) for p in lists) < max_age:
            return
        log("apt-get update (%s, private lists)" % SUITE)
        run(["apt-get", *self.opts, "-q", "update"], capture_output=True)
        for p in glob.glob(os.path.join(self.base, "lists", "*_Packages*")):
            os.utime(p)

    def available(self, pkgs: list[str]) -> set[str]:
        """The packages of pkgs that have a candidate version."""
        out = run(["apt-cache", *self.opts, "policy", *pkgs], capture_output=True).stdout
        return set(re.findall(r"^(\S+):\n\s+Installed:.*\n\s+Candidate:\s*(?!\(none\))\S+",
                              out, re.M))

    def depends(self, pkgs: list[str]) -> dict[str, list[list[str]]]:
        """{pkg: [[alternative, ...], ...]} of Depends and PreDepends; virtuals expanded."""
        out = run(["apt-cache", *self.opts, "depends", "--no-recommends", "--no-suggests",
                   "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *pkgs],
                  capture_output=True).stdout
        result: dict[str, list[list[str]]] = {}
        cur = None
        group: list[str] = []
        pending_or = False
        last_virtual = None
        for line in out.splitlines():
            if not line.startswith(" "):
                cur = line.strip()
                result[cur] = []
                pending_or = False
                continue
            m = re.match(r"^ (\|| )(Depends|PreDepends): (\S+)", line)
            if m and cur is not None:
                name = m.group(3)
                if not pending_or:
                    group = []
                    result[cur].append(group)
                if name.startswith("<"):
                    last_virtual = group
                else:
                    group.append(name)
                    last_virtual = None
                pending_or = m.group(1) == "|"
                continue
            m = re.match(r"^    (\S+)$", line)
            if m and last_virtual is not None:
                last_virtual.append(m.group(1))
        return result

    def download(self, pkgs: list[str]) -> list[str]:
        dest = os.path.join(self.base, "debs")
        for old in glob.glob(os.path.join(dest, "*.deb")):
            os.unlink(old)
        run(["apt-get", *self.opts, "-q", "download", *pkgs], cwd=dest, capture_output=True)
        return sorted(glob.glob(os.path.join(dest, "*.deb")))


def wanted_packages(apt: PrivateApt, version: str, dev: bool) -> list[str]:
    seeds = ["python%s" % version, "python%s-minimal" % version,
             "libpython%s-minimal" % version, "libpython%s-stdlib" % version,
             "python%s-venv" % version, "python3-pip-whl", "python3-setuptools-whl"]
    if dev:
        seeds += ["python%s-dev" % version, "libpython%s-dev" % version, "libpython%s" % version]
    available = apt.available(seeds + list(EXTRA_PACKAGES))
    missing = [p for p in seeds[:5] if p not in available]
    if missing:
        raise ProvisionError("Debian %s has no package %s" % (SUITE, ", ".join(missing)))
    seeds = [p for p in seeds + list(EXTRA_PACKAGES) if p in available]

    def follow(name: str) -> bool:
        if name in SKIP_DEPS:
            return False
        if name.startswith("libpython") or name.startswith("python"):
            return name in seeds
        if not name.startswith("lib"):
            return False
        return not re.search(r"-(dev|dbg|doc|bin)$", name)

    chosen: set[str] = set()
    todo = list(seeds)
    while todo:
        batch = [p for p in todo if p not in chosen]
        todo = []
        if not batch:
            break
        chosen.update(batch)
        for pkg, groups in apt.depends(batch).items():
            for alts in groups:
                pick = next((a for a in alts if follow(a)), None)
                if pick and pick not in chosen:
                    todo.append(pick)
    return sorted(chosen)


# ---------------------------------------------------------------- build


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def fix_absolute_symlinks(root: str) -> None:
    """dpkg-deb -x keeps absolute symlinks: point those that exist in the root into it."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                continue
            target = os.readlink(path)
            if not target.startswith("/"):
                continue
            inside = root + target
            if os.path.lexists(inside):
                os.unlink(path)
                os.symlink(os.path.relpath(inside, dirpath), path)


def patch_elves(root: str, version: str) -> None:
    libdirs = [d for d in (os.path.join(root, "usr/lib", ARCH_TRIPLET),
                           os.path.join(root, "lib", ARCH_TRIPLET),
                           os.path.join(root, "usr/lib")) if os.path.isdir(d)]
    rpath = ":".join(libdirs)
    loader = os.path.realpath(os.path.join(root, "usr/lib", ARCH_TRIPLET, "ld-linux-x86-64.so.2"))
    if not os.path.isfile(loader):
        raise ProvisionError("no ld-linux-x86-64.so.2 in the unpacked libc6")
    exe = os.path.join(root, "usr/bin", "python" + version)
    run(["patchelf", "--set-interpreter", loader, "--force-rpath", "--set-rpath", rpath, exe],
        capture_output=True)
    stdlib = os.path.join(root, "usr/lib", "python" + version)
    count = 0
    for dirpath, _, filenames in os.walk(stdlib):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if ".so" in name and not os.path.islink(path) and is_elf(path):
                run(["patchelf", "--force-rpath", "--set-rpath", rpath, path], capture_output=True)
                count += 1
    log("patched %s and %d extension modules (interpreter %s)"
        % (os.path.relpath(exe, root), count, os.path.relpath(loader, root)))


def fix_wheel_dir(root: str, version: str) -> None:
    """Debian's ensurepip takes its wheels from WHEEL_PKG_DIR=/usr/share/python-wheels,
    the *machine's* directory: point it at the root's copy from python3-pip-whl."""
    wheels = os.path.join(root, "usr/share/python-wheels")
    if not glob.glob(os.path.join(wheels, "pip-*.whl")):
        raise ProvisionError("python3-pip-whl brought no pip wheel")
    stdlib = os.path.join(root, "usr/lib", "python" + version)
    for path in glob.glob(os.path.join(stdlib, "_sysconfig*")):
        if os.path.isdir(path):
            continue
        with open(path) as f:
            text = f.read()
        new = re.sub(r"(['\"]WHEEL_PKG_DIR['\"]\s*:\s*['\"])/usr/share/python-wheels/?",
                     lambda m: m.group(1) + wheels + "/", text)
        if new != text:
            with open(path, "w") as f:
                f.write(new)
    # compiled copies of the patched modules would shadow them
    for pyc in glob.glob(os.path.join(stdlib, "__pycache__", "_sysconfig*.pyc")):
        os.unlink(pyc)


def smoke_test(root: str, version: str) -> str:
    py = os.path.join(root, "bin", "python" + version)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    code = ("import sys, sysconfig; import %s; "
            "sqlite3.connect(':memory:').execute('select 1'); ctypes.CDLL(None); "
            "ssl.create_default_context(); "
            "assert sys.prefix.startswith(%r), sys.prefix; "
            "print(sys.version.split()[0], sysconfig.get_config_var('Py_GIL_DISABLED'))"
            % (CHECK_IMPORTS, root))
    out = run([py, "-c", code], capture_output=True, env=env).stdout.strip()
    full_version, gil_disabled = out.split()
    if gil_disabled not in ("0", "None"):
        raise ProvisionError("%s is a free-threaded build" % py)
    # a venv, and pip (from the wheel ensurepip would install) running in it
    wheel = sorted(glob.glob(os.path.join(root, "usr/share/python-wheels/pip-*.whl")))[-1]
    with tempfile.TemporaryDirectory(prefix="pyteleport-venv-check-") as tmp:
        venv = os.path.join(tmp, "venv")
        run([py, "-m", "venv", "--without-pip", venv], capture_output=True, env=env)
        out = run([os.path.join(venv, "bin", "python"), os.path.join(wheel, "pip"), "--version"],
                  capture_output=True, env=env).stdout
        log("venv check: " + out.strip())
    return full_version


def build(version: str, root: str, apt: PrivateApt, dev: bool) -> None:
    t0 = time.monotonic()
    apt.update()
    pkgs = wanted_packages(apt, version, dev)
    log("downloading %d packages: %s" % (len(pkgs), " ".join(pkgs)))
    debs = apt.download(pkgs)
    parent = os.path.dirname(root)
    tmp = tempfile.mkdtemp(prefix=".build-%s-" % version, dir=parent)
    try:
        for deb in debs:
            run(["dpkg-deb", "-x", deb, tmp], capture_output=True)
        # the final path goes into the binaries: build in place of the final root
        old = None
        if os.path.lexists(root):
            old = tempfile.mkdtemp(prefix=".old-%s-" % version, dir=parent)
            os.rename(root, os.path.join(old, "root"))
        os.rename(tmp, root)
        tmp = None
        fix_absolute_symlinks(root)
        patch_elves(root, version)
        fix_wheel_dir(root, version)
        os.makedirs(os.path.join(root, "bin"), exist_ok=True)
        link = os.path.join(root, "bin", "python" + version)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.path.join("..", "usr", "bin", "python" + version), link)
        full_version = smoke_test(root, version)
        versions = {os.path.basename(d).split("_")[0]: os.path.basename(d).split("_")[1]
                    for d in debs}
        with open(os.path.join(root, STAMP), "w") as f:
            json.dump({"revision": REVISION, "root": root, "python": full_version,
                       "suite": SUITE, "packages": versions, "dev": dev,
                       "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, f, indent=1, sort_keys=True)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        log("CPython %s ready in %s (%.1f s)" % (full_version, root, time.monotonic() - t0))
    except BaseException:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.exists(os.path.join(root, STAMP)):
            shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        for deb in debs:
            try:
                os.unlink(deb)
            except OSError:
                pass


def provision(version: str, force: bool = False, dev: bool = False) -> str:
    base = cache_dir()
    root = os.path.join(base, version)
    bindir = os.path.join(root, "bin")
    if not force and is_cached(root, version) and (not dev or os.path.isdir(
            os.path.join(root, "usr/include/python" + version))):
        return bindir
    ensure_tools()
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, ".lock-" + version), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if not force and is_cached(root, version) and (not dev or os.path.isdir(
                os.path.join(root, "usr/include/python" + version))):
            return bindir  # built by a concurrent run
        with open(os.path.join(base, ".lock-apt"), "w") as aptlock:
            fcntl.flock(aptlock, fcntl.LOCK_EX)
            apt = PrivateApt(os.path.join(base, "apt"))
            build(version, root, apt, dev)
    return bindir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("versions", nargs="+", choices=VERSIONS, metavar="X.Y",
                    help="one of " + ", ".join(VERSIONS))
    ap.add_argument("--check", action="store_true", help="only tell whether it is cached")
    ap.add_argument("--force", action="store_true", help="rebuild even when cached")
    ap.add_argument("--dev", action="store_true", help="also unpack the C headers")
    args = ap.parse_args(argv)
    status = 0
    for version in args.versions:
        root = os.path.join(cache_dir(), version)
        if args.check:
            ok = is_cached(root, version)
            print(os.path.join(root, "bin") if ok else "not cached: " + root)
            status |= 0 if ok else 1
            continue
        try:
            print(provision(version, force=args.force, dev=args.dev), flush=True)
        except ProvisionError as e:
            log("cannot provision CPython %s: %s" % (version, e))
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
