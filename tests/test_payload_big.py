"""A checkpoint holding a buffer big enough to be checksummed in a thread
while it is written (pyteleport._payload.CRC_THREAD_MIN): it resumes with the
same data, and a flipped byte inside the buffer is refused."""
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


def test_big_buffer_checkpoint_resumes_and_detects_corruption(tmp_path):
    prog = write_program(tmp_path, PROG)
    payload = tmp_path / "ckpt.bin"
    written = run_python([prog, payload], tmp_path)
    assert written.stdout == "written\n", describe(written)
    resumed = run_python(["-m", "pyteleport", "resume", payload], tmp_path)
    assert resumed.returncode == 0, describe(resumed)
    assert resumed.stdout == f"resumed {80 << 20} True\n", describe(resumed)
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF                       # inside the 80 MiB buffer
    payload.write_bytes(data)
    bad = run_python(["-m", "pyteleport", "resume", payload], tmp_path)
    assert bad.returncode == 2, describe(bad)
    assert "resumed" not in bad.stdout and "checksum" in bad.stderr.lower(), describe(bad)
