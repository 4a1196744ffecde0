"""Checkpoints holding big buffers: they resume with the same data, signed
whatever checksum pipes use (the MAC, like CRC-32, hashes a buffer this big
in a thread while it is written: pyteleport._payload.container.CRC_THREAD_MIN),
and a flipped byte inside a buffer is refused."""
import pytest

from progs import describe, run_python, write_program

PROG = """\
import hashlib, sys
import pyteleport
data = bytearray(range(256)) * (80 * 4096)          # 80 MiB
data[12345] = 7
digest = hashlib.sha256(data).hexdigest()
if pyteleport.checkpoint(sys.argv[1]):
    print("resumed", len(data), hashlib.sha256(data).hexdigest() == digest, flush=True)
else:
    print("written", flush=True)
"""


@pytest.mark.parametrize("checksum", ["crc32", "xxh3-64"])
def test_big_buffer_checkpoint_resumes_and_detects_corruption(tmp_path, checksum):
    prog = write_program(tmp_path, PROG)
    payload = tmp_path / "ckpt.bin"
    written = run_python([prog, payload], tmp_path, env_extra={"PYTELEPORT_CHECKSUM": checksum})
    assert written.stdout == "written\n", describe(written)
    inspect = run_python(["-m", "pyteleport", "inspect", payload], tmp_path)
    assert "signed, key id" in inspect.stdout, describe(inspect)     # files are signed
    resumed = run_python(["-m", "pyteleport", "resume", payload], tmp_path)
    assert resumed.returncode == 0, describe(resumed)
    assert resumed.stdout == f"resumed {80 << 20} True\n", describe(resumed)
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF                       # inside the 80 MiB buffer
    payload.write_bytes(data)
    bad = run_python(["-m", "pyteleport", "resume", payload], tmp_path)
    assert bad.returncode == 2, describe(bad)
    assert "resumed" not in bad.stdout and "signature does not match" in bad.stderr, describe(bad)


NUMPY_PROG = """\
import sys
import numpy as np
import pyteleport
a = np.arange(3 << 20, dtype=np.float64).reshape(3, -1)    # 24 MiB: read into pages of its own
b = np.frombuffer(bytes(range(256)) * (1 << 14), dtype=np.uint8)   # read-only, 4 MiB
small = np.ones(10)
before = (float(a.sum()), int(b.sum()))


def show(when):
    print(when, a.shape, a.dtype, a[1, 5], a[2, -1], a.flags.writeable, b.flags.writeable,
          int(b.sum()), small.sum(), flush=True)


if pyteleport.checkpoint(sys.argv[1]):
    assert (float(a.sum()), int(b.sum())) == before
    a[1, 5] = -1.0                          # writable, as it was
    show("resumed")
    if pyteleport.checkpoint(sys.argv[1]):  # and it moves again
        show("resumed again")
    else:
        print("written again", flush=True)
else:
    print("written", flush=True)
"""


def test_numpy_arrays_resume_writable_and_move_again(tmp_path):
    prog = write_program(tmp_path, NUMPY_PROG)
    payload = tmp_path / "ckpt.bin"
    written = run_python([prog, payload], tmp_path)
    assert written.stdout == "written\n", describe(written)
    state = f"(3, 1048576) float64 -1.0 3145727.0 True False {32640 * (1 << 14)} 10.0"
    resumed = run_python(["-m", "pyteleport", "resume", payload], tmp_path)
    assert resumed.stdout == f"resumed {state}\nwritten again\n", describe(resumed)
    again = run_python(["-m", "pyteleport", "resume", payload], tmp_path)
    assert again.stdout == f"resumed again {state}\n", describe(again)


def test_a_payload_needing_a_missing_checksum_module_is_refused(tmp_path):
    """Checksummed with xxh3-64 (as over a pipe), read where xxhash cannot be
    imported: one line saying what to install, nothing run."""
    from pyteleport._payload.container import read
    prog = write_program(tmp_path, PROG.replace("80 * 4096", "4096"))
    signed = tmp_path / "signed.bin"
    written = run_python([prog, signed], tmp_path)
    assert written.stdout == "written\n", describe(written)
    with open(signed, "rb") as f:
        _, unsigned = read(f)
    payload = tmp_path / "ckpt.bin"
    with open(payload, "wb") as f:
        unsigned.write_to(f)
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "xxhash.py").write_text("raise ImportError('no xxhash here', name='xxhash')\n")
    import os
    path = os.pathsep.join([str(blocked), os.environ.get("PYTHONPATH", "")])
    proc = run_python(["-m", "pyteleport", "inspect", payload], tmp_path, env_extra={"PYTHONPATH": path})
    assert proc.returncode == 2, describe(proc)
    assert proc.stdout == "", describe(proc)
    assert proc.stderr == (f"pyteleport: {payload}: this payload is checksummed with xxh3-64, which "
                           "needs the xxhash module here: pip install xxhash\n"), describe(proc)


HUGE_PROG = """\
import sys
import pyteleport
data = bytearray(range(256)) * (32 * 4096)          # 32 MiB
if pyteleport.checkpoint(sys.argv[1]):
    with open("/proc/self/smaps_rollup") as f:
        kib = sum(int(line.split()[1]) for line in f if line.startswith("AnonHugePages:"))
    print("resumed", data[:4] == bytearray(range(4)), "huge", kib >= 16 << 10, flush=True)
else:
    print("written", flush=True)
"""


def _thp_mode() -> str:
    with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
        return f.read().split("[")[1].split("]")[0]


@pytest.mark.parametrize("advice", ["default", "NUMPY_MADVISE_HUGEPAGE=0"])
def test_big_buffers_are_read_into_huge_pages(tmp_path, advice):
    """Parts of 4 MiB or more are read into transparent huge pages (where the
    kernel gives them on request: THP 'madvise' or 'always'), unless
    NUMPY_MADVISE_HUGEPAGE=0 says no, as it does to NumPy."""
    prog = write_program(tmp_path, HUGE_PROG)
    payload = tmp_path / "ckpt.bin"
    written = run_python([prog, payload], tmp_path)
    assert written.stdout == "written\n", describe(written)
    env = {"NUMPY_MADVISE_HUGEPAGE": "0"} if advice != "default" else {}
    resumed = run_python(["-m", "pyteleport", "resume", payload], tmp_path, env_extra=env)
    mode = _thp_mode()
    huge = mode == "always" or (mode == "madvise" and advice == "default")
    assert resumed.stdout == f"resumed True huge {huge}\n", describe(resumed) + f"THP: {mode}"
