"""No debris after faults: a checkpoint killed (kill -9) while writing
leaves a temporary file; the next checkpoint to that path removes it, and
it is never taken for the checkpoint."""

import os
import signal
import subprocess
import sys
import time

import pytest

from progs import describe, run_python, write_program

BIG = """\
import sys
import pyteleport

state = bytearray(b"0123456789abcdef") * (int(sys.argv[2]) << 16)     # MiB
if pyteleport.checkpoint(sys.argv[1]):
    print("RESUMED", len(state) >> 20, flush=True)
"""


@pytest.mark.parametrize("moment", ["just created", "half written"])
def test_a_killed_checkpoint_leaves_nothing_after_the_next_one(tmp_path, moment):
    prog = write_program(tmp_path, BIG)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    target = folder / "state.bin"
    size_mib = 192
    source = subprocess.Popen([sys.executable, prog, target, str(size_mib)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    want = 0 if moment == "just created" else (size_mib << 20) // 2
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and source.poll() is None:
            temps = [p for p in folder.iterdir() if p.name != target.name]
            if temps and temps[0].stat().st_size >= want:
                break
            time.sleep(0.002)
        assert source.poll() is None, "the checkpoint finished before it could be killed"
        source.send_signal(signal.SIGKILL)
    finally:
        source.kill()
        source.communicate()
    left = [p for p in folder.iterdir()]
    assert left and not target.exists(), left          # the killed write's temporary file
    # it is not a checkpoint: resuming the path finds nothing there
    proc = run_python(["-m", "pyteleport", "resume", target], tmp_path)
    assert proc.returncode == 2 and "RESUMED" not in proc.stdout, describe(proc)
    proc = run_python([prog, target, "1"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert [p.name for p in folder.iterdir()] == [target.name]
    proc = run_python(["-m", "pyteleport", "resume", target], tmp_path)
    assert proc.returncode == 0 and proc.stdout == "RESUMED 1\n", describe(proc)


def test_the_ship_folder_goes_when_the_connection_drops_before_the_reply(tmp_path):
    """Finding 6: ssh/bash left an empty pyteleport-ship-* folder (boot.py
    died of an uncaught BrokenPipeError writing its first reply).  The
    target's boot script, with its connection's reading end really closed."""
    from importlib.util import MAGIC_NUMBER
    from pyteleport.backends._stream import boot
    offer = boot.encode({"python": list(sys.version_info[:2]), "magic": MAGIC_NUMBER.hex(), "token": "t0"})
    manifest = boot.encode({"pyteleport": "", "files": [], "cache": False}).encode()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    r, w = os.pipe()
    os.close(r)                          # the source is gone
    env = dict(os.environ, TMPDIR=str(scratch))
    proc = subprocess.run([sys.executable, boot.__file__, offer], input=len(manifest).to_bytes(4, "big") + manifest,
                          stdout=w, stderr=subprocess.PIPE, env=env, timeout=60)
    os.close(w)
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert list(scratch.iterdir()) == []


MPIRUN = """\
import pyteleport
pyteleport.teleport(backend="mpirun", n=1, setup="sleep 60")
print("MOVED", flush=True)
"""


def test_the_stage_of_a_killed_mpirun_source_is_reaped_by_the_next_move(tmp_path):
    """Finding 6: a killed ``mpirun`` source left its whole stage in /tmp."""
    import glob
    import tempfile
    from pyteleport.backends.mpirun._stage import PREFIX, make_dir
    prog = write_program(tmp_path, MPIRUN)
    source = subprocess.Popen([sys.executable, prog], cwd=tmp_path, start_new_session=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pattern = os.path.join(tempfile.gettempdir(), f"{PREFIX}{source.pid}-*")
    try:
        deadline = time.monotonic() + 60
        while not glob.glob(os.path.join(pattern, "payload")) and time.monotonic() < deadline:
            assert source.poll() is None, source.communicate()
            time.sleep(0.01)
        (stage,) = glob.glob(pattern)
        os.killpg(source.pid, signal.SIGKILL)         # the source and its launcher
    finally:
        source.kill()
        source.communicate()
    assert os.path.isdir(stage)
    fresh = make_dir()                                 # the next move's stage
    try:
        assert not os.path.exists(stage), os.listdir(stage)
        assert os.stat(fresh).st_mode & 0o777 == 0o700
    finally:
        os.rmdir(fresh)


@pytest.fixture
def full_tmpfs(tmp_path):
    """A real 256 KiB tmpfs, mounted for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the suite runs as root in CI)")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


FILLS_THE_DISK = """\
import os, sys
import pyteleport

path = sys.argv[1]
small = list(range(10))
if not pyteleport.checkpoint(path):
    print("FIRST", os.path.getsize(path) > 0, flush=True)
else:
    print("RESUMED", small[-1], "big" in globals(), flush=True)
    raise SystemExit(0)
big = os.urandom(1 << 20)           # the second checkpoint cannot fit
try:
    pyteleport.checkpoint(path)
    print("SECOND written", flush=True)
except pyteleport.TeleportError as e:
    print("REFUSED", e, flush=True)
print("FILES", sorted(os.listdir(os.path.dirname(path))), flush=True)
"""


def test_a_checkpoint_on_a_full_disk_is_refused_and_keeps_the_previous_one(tmp_path, full_tmpfs):
    prog = write_program(tmp_path, FILLS_THE_DISK)
    target = full_tmpfs / "state.ckpt"
    proc = run_python([prog, target], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == "FIRST True", describe(proc)
    assert lines[1].startswith("REFUSED ") and str(target) in lines[1], describe(proc)
    assert "No space left on device" in lines[1], describe(proc)
    assert lines[2] == "FILES ['state.ckpt']", describe(proc)     # no temporary file left
    resumed = run_python(["-m", "pyteleport", "resume", target], tmp_path)
    assert resumed.returncode == 0 and resumed.stdout == "RESUMED 9 False\n", describe(resumed)
