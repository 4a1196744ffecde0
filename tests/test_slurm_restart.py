"""Restarts of the ``slurm`` backend on the real local cluster, beyond a plain
requeue (tests/test_slurm.py): ``pyteleport.slurm.protect()`` in a user's own
sbatch script (requeued, and continued in a new job when Slurm refuses to
requeue, with ``max_restarts`` honoured), a teleported job whose requeue is
refused, signals to a waiting source passed on to the job, and a job's
outcome once Slurm has forgotten it.  Each run is compared with the output
of the same program run without Slurm.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

from progs import describe, run_python, write_program
from slurmctl import sh, wait_job_done
from test_slurm import LOOP, PRELUDE, _env, _stage_clean

pytestmark = pytest.mark.usefixtures("slurm_cluster")

# a program run by the user's own sbatch script; protect() first thing
PROTECTED = """\
import os, time
if "TEST_REFERENCE" not in os.environ:
    import pyteleport.slurm
    pyteleport.slurm.protect(max_restarts=int(os.environ["TEST_MAX_RESTARTS"]), grace=30)
total, squares = 0, {}
for i in range(40):
    squares[i] = i * i
    total += squares[i]
    print("step", i, total, flush=True)
    if i in (5, 25):
        print("mark", i, flush=True)
    t = time.time()
    while time.time() - t < 0.1:     # busy: the signal lands mid-loop, in Python code
        pass
print("done", total, sum(squares.values()), flush=True)
"""


def _wait_text(path, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.01)
    raise AssertionError(f"{text!r} not in {path} within {timeout} s: "
                         f"{path.read_text() if path.exists() else '(no file)'}")


def _jobs_named(name: str) -> list:
    ids = sh("squeue", "-h", "-t", "all", "--name", name, "-o", "%i").split()
    return sorted(ids, key=lambda i: [int(p) for p in i.split("_")])


def _wait_jobs(name: str, count: int, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = _jobs_named(name)
        if len(ids) >= count:
            return ids
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} jobs named {name} within {timeout} s: {_jobs_named(name)}")


def _submit_own_script(tmp_path, requeue: bool, max_restarts: int):
    """sbatch a user's own script that execs the protected program; (job id, name)."""
    prog = write_program(tmp_path, PROTECTED)
    name = f"ptl-own-{os.getpid()}-{time.monotonic_ns()}"
    script = tmp_path / "job.sh"
    script.write_text("\n".join([
        "#!/bin/sh",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --output={tmp_path}/out-%j.txt",
        f"#SBATCH --error={tmp_path}/err-%j.txt",
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue" if requeue else "#SBATCH --no-requeue",
        "#SBATCH --signal=B:USR2@30",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=10",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=200M",
        f"exec {sys.executable} {prog}",
    ]) + "\n")
    env = dict(os.environ, TEST_MAX_RESTARTS=str(max_restarts))
    job = subprocess.run(["sbatch", "--parsable", str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    return job, name, prog


def _reference(tmp_path, prog) -> str:
    proc = run_python([prog], tmp_path, env_extra={"TEST_REFERENCE": "1"})
    assert proc.returncode == 0, describe(proc)
    return proc.stdout


def test_protect_in_own_script_requeued(tmp_path):
    job, name, prog = _submit_own_script(tmp_path, requeue=True, max_restarts=3)
    out = tmp_path / f"out-{job}.txt"
    _wait_text(out, "mark 5\n")
    sh("scancel", "--batch", "--signal=USR2", job)
    fields = wait_job_done(job, timeout=90)
    assert fields["JobState"] == "COMPLETED" and fields["Restarts"] == "1", fields
    assert _jobs_named(name) == [job]
    assert out.read_text() == _reference(tmp_path, prog), (tmp_path / f"err-{job}.txt").read_text()
    assert not (tmp_path / ".pyteleport").exists(), os.listdir(tmp_path / ".pyteleport")


def test_protect_refused_requeue_continues_in_new_job(tmp_path):
    """``--no-requeue``: the first signal continues the program in a new job
    like the first (partition, time limit, CPUs, output files); the second,
    at max_restarts=1, leaves the snapshot for ``pyteleport resume``."""
    job, name, prog = _submit_own_script(tmp_path, requeue=False, max_restarts=1)
    out, err = tmp_path / f"out-{job}.txt", tmp_path / f"err-{job}.txt"
    _wait_text(out, "mark 5\n")
    sh("scancel", "--batch", "--signal=USR2", job)
    first, second = _wait_jobs(name, 2)
    assert first == job
    assert wait_job_done(job)["JobState"] == "COMPLETED"
    fields = dict(tok.partition("=")[::2] for tok in sh("scontrol", "show", "job", "-o", second).split())
    assert (fields["Partition"], fields["TimeLimit"], fields["CPUs/Task"], fields["MinMemoryNode"],
            fields["Requeue"]) == ("gpu", "00:10:00", "2", "200M", "0"), fields
    assert (fields["StdOut"], fields["StdErr"]) == (str(out), str(err)), fields
    _wait_text(out, "mark 25\n")
    sh("scancel", "--batch", "--signal=USR2", second)
    done = wait_job_done(second)
    assert done["JobState"] == "FAILED" and done["ExitCode"] == "1:0", done
    assert _jobs_named(name) == [first, second]        # no third job: max_restarts
    ckpt = tmp_path / ".pyteleport" / f"job-{job}" / "ckpt.0"
    assert f"restarted 1 times (max_restarts): no job continues it; continue it with: " \
           f"pyteleport resume {ckpt}" in err.read_text(), err.read_text()
    resumed = run_python(["-m", "pyteleport", "resume", str(ckpt)], tmp_path)
    assert resumed.returncode == 0, describe(resumed)
    assert out.read_text() + resumed.stdout == _reference(tmp_path, prog), err.read_text()


def _source(tmp_path, prog, **options) -> subprocess.Popen:
    env = dict(os.environ, PYTHONIOENCODING="utf-8", TEST_SLURM_MOVE="1",
               **_env(tmp_path, wait=True, **options))
    return subprocess.Popen([sys.executable, str(prog)], cwd=tmp_path, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "source.err", "w"))


def _read_until(proc, marker: str) -> list:
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line == marker:
            return seen
    raise AssertionError(f"no {marker!r}: {''.join(seen)}")


def _interact(proc, marker: str, action) -> str:
    """The source's whole stdout; ``action()`` once ``marker`` was printed."""
    try:
        seen = _read_until(proc, marker)
        action()
        rest = proc.stdout.read()
        proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    return "".join(seen) + rest


def _refuse_requeue_and_signal(job: str) -> None:
    """Slurm refuses to requeue ``job`` from now on (as a site policy would); the warning signal."""
    sh("scontrol", "update", f"jobid={job}", "Requeue=0")
    sh("scancel", "--batch", "--signal=USR2", job)


def test_teleported_job_refused_requeue_followed_into_new_job(tmp_path):
    """A teleport(requeue=True) job whose requeue Slurm refuses (its Requeue
    flag cleared, as a site policy would): the waiting source follows the
    new job and prints what an uninterrupted run prints."""
    prog = write_program(tmp_path, LOOP)
    reference = run_python([prog], tmp_path)
    assert reference.returncode == 0, describe(reference)
    name = f"ptl-refused-{os.getpid()}-{time.monotonic_ns()}"
    proc = _source(tmp_path, prog, requeue=True, grace=60, job_name=name)
    out = _interact(proc, "ready\n", lambda: _refuse_requeue_and_signal(_jobs_named(name)[0]))
    err = (tmp_path / "source.err").read_text()
    assert proc.returncode == 0, err
    assert out == reference.stdout, err
    assert len(_jobs_named(name)) == 2
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")


HANDLER = PRELUDE + """
import signal, time
def handler(signum, frame):
    say("got", signal.Signals(signum).name)
    sys.exit(40 + signum)
signal.signal(signal.SIGTERM, handler)
signal.signal(signal.SIGUSR1, handler)
if os.environ.get("TEST_SLURM_MOVE") == "1":
    pyteleport.teleport(backend="slurm", **OPTIONS)
print("ready", flush=True)
while True:
    time.sleep(0.01)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_to_waiting_source_reaches_the_job(tmp_path, sig):
    prog = write_program(tmp_path, HANDLER)
    proc = _source(tmp_path, prog)
    out = _interact(proc, "ready\n", lambda: proc.send_signal(sig))
    err = (tmp_path / "source.err").read_text()
    assert out == f"ready\nMOVED got {sig.name}\n", err
    assert proc.returncode == 40 + sig, err
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")


def test_outcome_from_the_stage_after_the_job_ended(tmp_path):
    """The source's exit code comes from the exit status the job's program
    left in the stage: a follower started after the job ended (the first
    source was killed) finds it; for a job Slurm has forgotten and that left
    nothing (no accounting here), it says why it cannot tell."""
    prog = write_program(tmp_path, PRELUDE + """
        import time
        pyteleport.teleport(backend="slurm", **OPTIONS)
        print("ready", flush=True)
        time.sleep(0.5)
        sys.exit(5)
    """.replace("\n        ", "\n"))
    name = f"ptl-outcome-{os.getpid()}-{time.monotonic_ns()}"
    proc = _source(tmp_path, prog, job_name=name)
    _read_until(proc, "ready\n")
    proc.kill()
    proc.wait()
    [job] = _jobs_named(name)
    assert wait_job_done(job)["JobState"] == "FAILED"
    [stage] = (tmp_path / "stage").iterdir()
    assert (stage / f"exit.{job}").read_text() == "5\n"
    follow = """
import sys
from pyteleport.backends._slurm_follow import Follower
sys.exit(Follower(sys.argv[1], sys.argv[2]).run())
"""
    again = run_python(["-c", follow, job, str(stage)], tmp_path)
    assert again.returncode == 5, describe(again)
    assert again.stdout == "ready\n", describe(again)
    # a job id Slurm no longer knows (ended long before MinJobAge), nothing in the stage
    old = "1"
    assert subprocess.run(["scontrol", "show", "job", old], capture_output=True).returncode != 0
    gone = run_python(["-c", follow, old, str(tmp_path)], tmp_path)
    assert gone.returncode == 1, describe(gone)
    assert "slurm job 1 ended, but its exit status is unknown: Slurm no longer lists it" \
        in gone.stderr, describe(gone)


ARRAY_LOOP = PRELUDE + """
import time
if os.environ.get("TEST_SLURM_MOVE") == "1":
    pyteleport.teleport(backend="slurm", **OPTIONS)
    task = pyteleport.task_index()
else:
    task = int(os.environ["TEST_TASK"])
total = 0
for i in range(40):
    total += i * i
    print(f"t{task} step {i} {total} {pyteleport.task_index()}", flush=True)
    if i == 5:
        print(f"t{task} ready", flush=True)
    t = time.time()
    while time.time() - t < 0.05:     # busy: the signal lands mid-loop, in Python code
        pass
print(f"t{task} done {total}", flush=True)
"""


def test_array_task_refused_requeue_continues_as_that_task(tmp_path):
    """One task of an array job cannot be requeued: a new (plain) job continues
    it as the same task (pyteleport.task_index() unchanged), the other task runs
    on, and the source follows both to the end."""
    prog = write_program(tmp_path, ARRAY_LOOP)
    reference = []
    for task in (0, 1):
        ref = run_python([prog], tmp_path, env_extra={"TEST_TASK": str(task)})
        assert ref.returncode == 0, describe(ref)
        reference += ref.stdout.replace(" None\n", f" {task}\n").splitlines()
    name = f"ptl-array-{os.getpid()}-{time.monotonic_ns()}"
    proc = _source(tmp_path, prog, array=2, requeue=True, grace=60, job_name=name,
                   output=str(tmp_path / "job-%A_%a.out"), error=str(tmp_path / "job-%A_%a.err"))
    out = _interact(proc, "t0 ready\n",
                    lambda: _refuse_requeue_and_signal(_jobs_named(name)[0].split("_")[0] + "_0"))
    err = (tmp_path / "source.err").read_text()
    assert proc.returncode == 0, err
    assert sorted(out.splitlines()) == sorted(reference), err
    array_job = _jobs_named(name)[0].split("_")[0]
    jobs = _jobs_named(name)
    assert jobs[:2] == [f"{array_job}_0", f"{array_job}_1"] and len(jobs) == 3, jobs
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")


def test_source_stdout_closed_job_runs_on(tmp_path):
    """The reader of the waiting source's stdout goes away (``| head -1``):
    the job runs to its end, its output stays in its file, and the source
    still exits with the job's exit code."""
    prog = write_program(tmp_path, PRELUDE + """
        import time
        pyteleport.teleport(backend="slurm", **OPTIONS)
        print("ready", flush=True)
        time.sleep(1)
        for i in range(3):
            say("after", i)
        sys.exit(3)
    """.replace("\n        ", "\n"))
    name = f"ptl-closed-{os.getpid()}-{time.monotonic_ns()}"
    proc = _source(tmp_path, prog, job_name=name)
    assert proc.stdout.readline() == "ready\n"
    proc.stdout.close()
    assert proc.wait(timeout=60) == 3, (tmp_path / "source.err").read_text()
    [job] = _jobs_named(name)
    assert (tmp_path / f"job-{job}.out").read_text() == \
        "ready\nMOVED after 0\nMOVED after 1\nMOVED after 2\n"


def test_ctrl_c_on_waiting_source_cancels_the_job(tmp_path):
    """SIGINT is not passed on: it cancels the job (no question asked when
    stdin is not a terminal), and the source exits as the job did."""
    prog = write_program(tmp_path, PRELUDE + """
        import time
        pyteleport.teleport(backend="slurm", **OPTIONS)
        print("ready", flush=True)
        time.sleep(60)
        say("not reached")
    """.replace("\n        ", "\n"))
    name = f"ptl-ctrlc-{os.getpid()}-{time.monotonic_ns()}"
    proc = _source(tmp_path, prog, job_name=name)
    out = _interact(proc, "ready\n", lambda: proc.send_signal(signal.SIGINT))
    assert out == "ready\n", (tmp_path / "source.err").read_text()
    [job] = _jobs_named(name)
    fields = wait_job_done(job)
    assert fields["JobState"] == "CANCELLED", fields
    assert proc.returncode == 128 + signal.SIGTERM, (tmp_path / "source.err").read_text()
