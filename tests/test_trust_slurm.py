"""Trust in the Slurm stage: a stage another user could change is refused,
by the source before it submits and by the job before it reads anything;
a stage_dir the user made stays.  Another user's files are a real second
uid's (otheruser.py)."""

import json
import os
import sys

import pytest

from otheruser import as_other, plant, remove, shared_dir
from progs import describe, run_python, write_program

PROGRAM = """\
import json, os, sys
import pyteleport
try:
    pyteleport.teleport(backend="slurm", **json.loads(sys.argv[1]))
except pyteleport.TeleportError as e:
    print("REFUSED", e, flush=True)
print("HERE" if "SLURM_JOB_ID" not in os.environ else "MOVED", flush=True)
"""


def _options(tmp_path, stage_dir) -> str:
    return json.dumps({"stage_dir": str(stage_dir), "wait": True, "output": str(tmp_path / "job-%j.out"),
                       "error": str(tmp_path / "job-%j.err")})


def test_a_stage_dir_others_can_write_is_refused(tmp_path):
    """Finding 3: a pre-existing stage_dir kept its loose mode, and another
    user replaced the job's directory in it."""
    shared = shared_dir()
    try:
        prog = write_program(tmp_path, PROGRAM)
        proc = run_python([prog, _options(tmp_path, shared)], tmp_path)
        assert proc.returncode == 0, describe(proc)
        assert proc.stdout.splitlines()[-1] == "HERE", describe(proc)
        assert "REFUSED" in proc.stdout and f"chmod go-w {shared}" in proc.stdout, describe(proc)
        assert os.listdir(shared) == []
    finally:
        remove(shared)


@pytest.mark.parametrize("whose", ["another user's", "loose"])
def test_the_job_refuses_a_stage_it_cannot_trust(tmp_path, whose):
    """Finding 3: the job (running as the victim) resumed the planted
    ``ckpt.<task>`` of a job directory another user put in its place."""
    from pyteleport.backends.slurm._stage import ENTRY, entry_command
    forged = tmp_path / "forged.bin"
    pwned = write_program(tmp_path, "import sys, pyteleport\nif pyteleport.checkpoint(sys.argv[1]):\n"
                          "    print('PWNED', flush=True)\n", name="pwned.py")
    proc = run_python([pwned, forged], tmp_path)
    assert proc.returncode == 0, describe(proc)
    shared = shared_dir()
    try:
        stage = shared / "job-1-abcd"
        if whose == "another user's":
            as_other("mkdir", "-m", "777", stage)
            plant(forged.read_bytes(), stage / "ckpt.0")
        else:
            stage.mkdir()
            os.chmod(stage, 0o777)
            (stage / "ckpt.0").write_bytes(forged.read_bytes())
            os.chmod(stage / "ckpt.0", 0o600)
        cmd = entry_command(sys.executable, str(stage), entry=ENTRY)
        proc = run_python(cmd[1:], tmp_path)
        info = describe(proc)
        assert proc.returncode == 2 and "PWNED" not in proc.stdout, info
        assert ("belongs to uid" if whose == "another user's" else "chmod go-rwx") in proc.stderr, info
        assert not (stage / "status.0").exists(), info
    finally:
        remove(shared)


@pytest.mark.usefixtures("slurm_cluster")
def test_a_stage_dir_the_user_made_stays_after_the_job(tmp_path):
    """Finding 3: a pre-existing empty stage dir was deleted after the job."""
    stage_dir = tmp_path / "my-stage"
    stage_dir.mkdir(mode=0o700)
    prog = write_program(tmp_path, PROGRAM)
    proc = run_python([prog, _options(tmp_path, stage_dir)], tmp_path)
    assert proc.returncode == 0 and proc.stdout.splitlines() == ["MOVED"], describe(proc)
    assert stage_dir.is_dir() and os.listdir(stage_dir) == []


SLOW = """\
import os, sys, time
import pyteleport


class Slow:
    def __reduce__(self):          # packing the program takes a minute
        time.sleep(60)
        return (Slow, ())


keep = Slow()
pyteleport.teleport(backend="slurm", wait=True, stage_dir=sys.argv[1], output=sys.argv[2])
print("MOVED", flush=True)
"""


@pytest.mark.usefixtures("slurm_cluster")
def test_a_job_whose_source_died_gives_up_within_seconds(tmp_path):
    """Finding 6: the job held its allocation for up to 600 s waiting for a
    payload that would never come, and left its stage."""
    import signal
    import subprocess
    import time
    name = f"ptl-lease-{os.getpid()}-{os.urandom(3).hex()}.py"
    prog = write_program(tmp_path, SLOW, name=name)
    stage_dir = tmp_path / "stage"
    source = subprocess.Popen([sys.executable, prog, stage_dir, tmp_path / "job-%j.out"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        job = None
        while job is None and time.monotonic() < deadline:
            out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True).stdout
            words = out.split()
            if len(words) == 2 and words[1] == "RUNNING":
                job = words[0]
            time.sleep(0.2)
        assert job is not None, "the job never ran"
        time.sleep(1)
        source.send_signal(signal.SIGKILL)
        killed = time.monotonic()
    finally:
        source.kill()
        source.communicate()
    while time.monotonic() - killed < 60:
        if not subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
            break
        time.sleep(0.2)
    gave_up = time.monotonic() - killed
    assert gave_up < 10, f"the job waited {gave_up:.1f} s after its source died"
    assert not stage_dir.exists() or os.listdir(stage_dir) == [], list(stage_dir.rglob("*"))
