"""A large buffer referenced several times travels once (one out-of-band
buffer, one copy in the payload) and arrives as one object."""

from progs import describe, run_python, write_program

SIZE = 4 * 1024 * 1024

PROGRAM = f"""
import os, sys
import pyteleport

big = os.urandom({SIZE})
data = bytearray(big[:{SIZE} // 2])
refs = {{"a": big, "b": [big, big], "c": data, "d": (data,)}}

def work():
    local_big = big
    if not pyteleport.checkpoint(sys.argv[1]):
        os._exit(0)
    print("resumed", local_big is big, refs["a"] is big, refs["b"][1] is big,
          refs["c"] is data, refs["d"][0] is data, len(big), len(data))

work()
"""


def test_shared_big_buffers_travel_once(tmp_path):
    prog = write_program(tmp_path, PROGRAM)
    payload = tmp_path / "state.bin"
    proc = run_python([prog, payload], tmp_path)
    assert proc.returncode == 0 and payload.exists(), describe(proc)
    size = payload.stat().st_size
    # one copy of big (4 MiB) and one of data (2 MiB), not five
    assert 1.5 * SIZE <= size < 1.5 * SIZE + 256 * 1024, size
    proc = run_python(["-m", "pyteleport", "resume", payload], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.split() == ["resumed"] + ["True"] * 5 + [str(SIZE), str(SIZE // 2)], describe(proc)
