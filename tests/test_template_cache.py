"""The on-disk cache of compiled morph templates (pyteleport/_core/compile_cache.py).

Each test runs a real program that moves, in a private cache folder, and
compares what it prints with a run that does not move.  Whether the source
process had to compile (and so import the ``bytecode`` package) is what the
program itself sees in ``sys.modules`` after ``checkpoint()`` returns.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from progs import describe, run, run_python, write_program

REPO = Path(__file__).resolve().parent.parent

PROGRAM = """\
import os, sys
import pyteleport

MODE = os.environ["MOVE"]
LABEL = "{label}"


def move():
    if MODE == "teleport":
        pyteleport.teleport()
    elif MODE == "checkpoint":
        resumed = pyteleport.checkpoint(os.environ["CHECKPOINT"])
        if not resumed:
            print(os.getpid(), "loaded here:", "bytecode" in sys.modules, "dis" in sys.modules,
                  flush=True)
            sys.exit(0)


def work(x):
    seen = [x]
    for i in range(3):
        if i == 1:
            seen.append(10 * len(seen) + (move() or 0))
        seen.append(i)
    return seen


print(os.getpid(), LABEL, "start", flush=True)
total = 100 + sum(work(5))
print(os.getpid(), LABEL, "result", total, flush=True)
"""


def _program(tmp_path: Path, label: str = "A") -> Path:
    return write_program(tmp_path, PROGRAM.format(label=label))


def _run(prog: Path, move: str, cache: Path | None, **env):
    extra = {"MOVE": move, "CHECKPOINT": str(prog.parent / "state.payload"),
             "PYTELEPORT_NO_CACHE": ""}
    if cache is not None:
        extra["PYTELEPORT_CACHE_DIR"] = str(cache)
    extra.update(env)
    proc = run_python([prog], prog.parent, env_extra=extra)
    assert proc.returncode == 0, describe(proc)
    return proc


def _lines(proc):
    """(pid, text) for each line printed."""
    out = []
    for line in proc.stdout.splitlines():
        pid, _, text = line.partition(" ")
        out.append((pid, text))
    return out


def _assert_moved_like_reference(prog: Path, cache: Path | None, **env):
    """Run with teleport() and without moving: same lines, the last one from a new process."""
    reference = _lines(_run(prog, "none", cache, **env))
    moved = _lines(_run(prog, "teleport", cache, **env))
    assert [t for _, t in moved] == [t for _, t in reference]
    assert moved[0][0] != moved[1][0], moved   # the result came from the new process


def _checkpoint_loads(prog: Path, cache: Path | None, **env) -> tuple:
    """Take a checkpoint; whether the source imported (bytecode, dis) for it.
    The checkpoint is resumed and must finish the program as a plain run does."""
    proc = _run(prog, "checkpoint", cache, **env)
    lines = _lines(proc)
    assert lines[1][1].startswith("loaded here: "), describe(proc)
    resumed = run([sys.executable, "-m", "pyteleport", "resume", prog.parent / "state.payload"],
                  prog.parent, env_extra={"PYTHONPATH": str(REPO)})
    assert resumed.returncode == 0, describe(resumed)
    reference = _lines(_run(prog, "none", None))
    assert [t for _, t in _lines(resumed)] == [reference[1][1]], describe(resumed)
    return tuple(word == "True" for word in lines[1][1].split()[2:])


def _checkpoint_compiles(prog: Path, cache: Path | None, **env) -> bool:
    """Whether the source had to compile morphs (import bytecode) for a checkpoint."""
    return _checkpoint_loads(prog, cache, **env)[0]


def _entries(cache: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(cache.rglob("*")) if p.is_file()}


def test_second_run_reuses_the_stored_templates(tmp_path):
    cache = tmp_path / "cache"
    prog = _program(tmp_path)
    assert _checkpoint_loads(prog, cache) == (True, True)
    entries = _entries(cache)
    # a template and an analysis for each of move(), work() and the module frame
    assert len(entries) == 6, entries
    assert _checkpoint_loads(prog, cache) == (False, False)
    assert _entries(cache) == entries
    _assert_moved_like_reference(prog, cache)


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "empty", "not an entry", "swapped"])
def test_damaged_entry_is_ignored_and_rebuilt(tmp_path, damage):
    cache = tmp_path / "cache"
    prog = _program(tmp_path)
    assert _checkpoint_compiles(prog, cache) is True
    good = _entries(cache)
    paths = list(good)
    for k, path in enumerate(paths):
        if damage == "truncated":
            path.write_bytes(good[path][: len(good[path]) // 2])
        elif damage == "flipped byte":
            data = bytearray(good[path])
            data[-10] ^= 0xFF
            path.write_bytes(bytes(data))
        elif damage == "empty":
            path.write_bytes(b"")
        elif damage == "not an entry":
            path.write_bytes(b"#!/bin/sh\necho hello\n" * 20)
        else:
            # intact entries under each other's names: valid checksums, wrong keys
            path.write_bytes(good[paths[(k + 1) % len(paths)]])
    assert _checkpoint_loads(prog, cache) == (True, True)
    assert _entries(cache) == good        # rewritten as they were
    assert _checkpoint_compiles(prog, cache) is False
    _assert_moved_like_reference(prog, cache)


def test_edited_program_gets_new_templates(tmp_path):
    cache = tmp_path / "cache"
    prog = _program(tmp_path, "A")
    _assert_moved_like_reference(prog, cache)
    before = _entries(cache)
    prog = _program(tmp_path, "B")   # same shape, other constants
    assert _checkpoint_compiles(prog, cache) is True
    _assert_moved_like_reference(prog, cache)
    moved = _lines(_run(prog, "teleport", cache))
    assert [t.split()[0] for _, t in moved] == ["B", "B"], moved
    assert set(before) < set(_entries(cache))


def test_disabled_by_environment(tmp_path):
    cache = tmp_path / "cache"
    prog = _program(tmp_path)
    for _ in range(2):
        assert _checkpoint_compiles(prog, cache, PYTELEPORT_NO_CACHE="1") is True
    _assert_moved_like_reference(prog, cache, PYTELEPORT_NO_CACHE="1")
    assert not cache.exists()


def test_unwritable_cache_folder_still_moves(tmp_path):
    # a folder that cannot be created (its parent is a file): fails for root too
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder\n")
    cache = blocker / "cache"
    prog = _program(tmp_path)
    for _ in range(2):
        assert _checkpoint_compiles(prog, cache) is True
    _assert_moved_like_reference(prog, cache)
    assert blocker.read_text() == "a file, not a folder\n"


def test_folder_writable_by_others_is_not_used(tmp_path):
    # entries hold code the resumed program runs: another user's must not count
    cache = tmp_path / "cache"
    prog = _program(tmp_path)
    assert _checkpoint_compiles(prog, cache) is True
    (folder,) = {p.parent for p in _entries(cache)}
    entries = _entries(cache)
    folder.chmod(0o777)
    for _ in range(2):
        assert _checkpoint_compiles(prog, cache) is True
    _assert_moved_like_reference(prog, cache)
    assert _entries(cache) == entries   # nothing written there either
    folder.chmod(0o700)
    assert _checkpoint_compiles(prog, cache) is False


@pytest.mark.parametrize("how", ["mode 0666", "another user's", "a symbolic link"])
def test_an_entry_others_could_have_written_is_not_used(tmp_path, how):
    """Finding 5: only the folder was checked; a loose entry, another uid's
    or a link to a file elsewhere was used."""
    import os
    from otheruser import other_user
    cache = tmp_path / "cache"
    prog = _program(tmp_path)
    assert _checkpoint_compiles(prog, cache) is True
    assert _checkpoint_compiles(prog, cache) is False
    for entry in _entries(cache):
        if how == "mode 0666":
            entry.chmod(0o666)
        elif how == "another user's":
            os.chown(entry, *other_user())
        else:
            elsewhere = tmp_path / entry.name
            entry.replace(elsewhere)
            entry.symlink_to(elsewhere)
    assert _checkpoint_compiles(prog, cache) is True
    _assert_moved_like_reference(prog, cache)


def _other_interpreters() -> list:
    """Other CPython 3.9-3.13 interpreters on PATH (their folder name needs
    only the standard library, not pyteleport's dependencies)."""
    found = []
    for minor in range(9, 14):
        if minor == sys.version_info[1]:
            continue
        exe = shutil.which(f"python3.{minor}")
        if exe:
            found.append(exe)
    return found


def test_each_interpreter_has_its_own_entries(tmp_path):
    cache = tmp_path / "cache"
    prog = _program(tmp_path)
    assert _checkpoint_compiles(prog, cache) is True
    folders = {p.parent for p in _entries(cache)}
    assert len(folders) == 1, folders
    (mine,) = folders
    from importlib.util import MAGIC_NUMBER
    assert mine.name.startswith(f"{sys.implementation.cache_tag}-{MAGIC_NUMBER.hex()}-"), mine.name
    code = "import pyteleport._core.compile_cache as t; print(t.directory())"
    seen = {str(mine)}
    for exe in _other_interpreters():
        proc = run([exe, "-c", code], tmp_path,
                   env_extra={"PYTHONPATH": str(REPO), "PYTELEPORT_CACHE_DIR": str(cache)})
        if proc.returncode != 0 or not proc.stdout.strip():
            continue   # a pyenv shim of a version that is not installed
        theirs = proc.stdout.strip()
        assert theirs not in seen, (exe, theirs, seen)
        seen.add(theirs)
