"""Fuzzing the payload reader: thousands of mutated payloads (bit flips,
overwritten bytes, truncations, appended bytes, random files, huge lengths,
FIFOs, directories) against what ``resume`` and ``inspect`` do before
anything of a payload runs.  Every one is refused with a one-line
PayloadError, and nothing is unpickled: the payload's state calls a sentinel
when loaded, which must never be called.

In-process (fast), through the same functions the command line uses; a few
go through the real command line too."""

import os
import pickle
import random
import sys
import types

import pytest

from progs import describe, run_python

COUNT = 3000          # mutations per kind of reader (resume, inspect)

hits = []


def _sentinel(*args):
    hits.append(args)
    return "EXECUTED"


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small, valid, signed payload whose state calls the sentinel when unpickled."""
    from pyteleport._payload.container import Payload
    module = types.ModuleType("ptl_fuzz_sentinel")
    module.hit = _sentinel
    sys.modules["ptl_fuzz_sentinel"] = module
    _sentinel.__module__ = "ptl_fuzz_sentinel"
    _sentinel.__qualname__ = "hit"
    context = pickle.dumps({"cwd": "/", "argv": ["prog.py"], "frames": ["prog.py:1 in <module>"],
                            "environ": {}, "path": []}, protocol=4)
    state = pickle.dumps({"main": {"x": _sentinel}}, protocol=5)
    path = tmp_path_factory.mktemp("fuzz") / "base.bin"
    with open(path, "wb") as f:
        Payload(context, state, [bytearray(b"B" * 300), b"bytes-buffer"]).write_to(f, sign=True)
    os.chmod(path, 0o600)
    return path.read_bytes()


def _field_offsets(data: bytes) -> list:
    from pyteleport._payload.container import HEADER
    from pyteleport._payload.signing import ID_SIZE
    at = HEADER.size + data[HEADER.size - 1] + ID_SIZE
    ctx_len = int.from_bytes(data[at:at + 8], "little")
    state_at = at + 8 + ctx_len
    state_len = int.from_bytes(data[state_at:state_at + 8], "little")
    count_at = state_at + 8 + state_len
    return [(at, 8), (state_at, 8), (count_at, 4), (count_at + 5, 8)]


def _mutations(data: bytes, n: int, seed: int):
    rng = random.Random(seed)
    fields = _field_offsets(data)
    for i in range(n):
        kind = i % 7
        d = bytearray(data)
        if kind == 0:                                  # one bit flipped
            at = rng.randrange(len(d))
            d[at] ^= 1 << rng.randrange(8)
        elif kind == 1:                                # a run of random bytes
            at = rng.randrange(len(d))
            d[at:at + rng.randint(1, 16)] = rng.randbytes(rng.randint(1, 16))
        elif kind == 2:                                # truncated
            d = d[:rng.randrange(len(d))]
        elif kind == 3:                                # bytes appended
            d += rng.randbytes(rng.randint(1, 64))
        elif kind == 4:                                # a random file
            d = bytearray(rng.randbytes(rng.randint(0, 2 * len(data))))
            if rng.random() < 0.5:
                d[:8] = b"PYTLPORT"
        elif kind == 5:                                # a huge or wrong length
            at, size = rng.choice(fields)
            value = rng.choice([2 ** (8 * size) - 1, 2 ** (8 * size - 1), rng.getrandbits(8 * size),
                                int.from_bytes(d[at:at + size], "little") + rng.choice([-1, 1])])
            d[at:at + size] = (value % 2 ** (8 * size)).to_bytes(size, "little")
        else:                                          # several flips
            for _ in range(rng.randint(2, 8)):
                at = rng.randrange(len(d))
                d[at] ^= rng.randint(1, 255)
        if bytes(d) != data:
            yield bytes(d)


def _resume_reads(path):
    """What ``pyteleport resume PATH`` does before unpickling anything."""
    from pyteleport._core.restore import open_payload
    from pyteleport._payload.container import read
    with open_payload(path) as f:
        read(f)


def _inspect_reads(path):
    from pyteleport._payload.container import inspect
    from pyteleport._payload.private import open_file
    with open_file(path, owner=False) as f:
        inspect(f)


@pytest.mark.parametrize("reader", [_resume_reads, _inspect_reads], ids=["resume", "inspect"])
def test_fuzz_every_mutated_payload_is_refused(base, tmp_path, reader):
    import tempfile
    from pyteleport._payload.container import PayloadError
    # tmpfs where there is one: rewriting a file on a disk costs milliseconds
    where = tempfile.mkdtemp(dir="/dev/shm") if os.path.isdir("/dev/shm") else None
    try:
        _fuzz(base, os.path.join(where or str(tmp_path), "p.bin"), reader, PayloadError)
    finally:
        if where is not None:
            import shutil
            shutil.rmtree(where, ignore_errors=True)


def _fuzz(base, path, reader, PayloadError):
    with open(path, "wb") as f:
        f.write(base)
    os.chmod(path, 0o600)
    reader(path)                         # the unmutated payload is accepted
    refused = 0
    for data in _mutations(base, COUNT, seed=reader.__name__.__len__()):
        with open(path, "wb") as f:
            f.write(data)
        try:
            reader(path)
        except PayloadError as e:
            assert "\n" not in str(e) and str(e)
            refused += 1
            continue
        raise AssertionError(f"a mutated payload was accepted: {data!r}")
    assert refused > COUNT * 0.99
    assert hits == [], "a mutated payload's state was unpickled"


@pytest.mark.parametrize("reader", [_resume_reads, _inspect_reads], ids=["resume", "inspect"])
def test_fuzz_fifos_directories_and_links_are_refused(base, tmp_path, reader):
    from pyteleport._payload.container import PayloadError
    from pyteleport._payload.private import UnsafeFile
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "dir"
    folder.mkdir()
    good = tmp_path / "good.bin"
    good.write_bytes(base)
    os.chmod(good, 0o600)
    link = tmp_path / "link"
    link.symlink_to(good)
    for path in (fifo, folder, link, "/dev/zero", "/dev/null"):
        with pytest.raises((PayloadError, UnsafeFile)):
            reader(path)
    assert hits == []


def _plant_cases(base: bytes, tmp_path):
    cases = {}
    flip = bytearray(base)
    flip[len(base) // 2] ^= 0x10
    cases["flip"] = bytes(flip)
    cases["truncated"] = base[:len(base) - 5]
    cases["appended"] = base + b"\0"
    cases["random"] = random.Random(5).randbytes(3000)
    huge = bytearray(base)
    at, size = _field_offsets(base)[1]
    huge[at:at + size] = (2 ** 63).to_bytes(8, "little")
    cases["huge length"] = bytes(huge)
    paths = []
    for name, data in cases.items():
        p = tmp_path / name.replace(" ", "_")
        p.write_bytes(data)
        os.chmod(p, 0o600)
        paths.append(p)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    return paths + [fifo, folder]


@pytest.mark.parametrize("command", ["resume", "inspect"])
def test_fuzz_through_the_command_line(base, tmp_path, command):
    for path in _plant_cases(base, tmp_path):
        proc = run_python(["-m", "pyteleport", command, path], tmp_path)
        info = describe(proc)
        assert proc.returncode == 2, info
        err = proc.stderr.strip()
        assert err and len(err.splitlines()) == 1 and "Traceback" not in err, info
        assert "EXECUTED" not in proc.stdout, info
