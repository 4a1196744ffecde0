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
from slurmctl import never_issued_job_id, sh, wait_job_done
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


def _submit_own_script(tmp_path, requeue: bool, max_restarts: int, exec_python: bool = True):
    """sbatch a user's own script that execs the protected program (or,
    ``exec_python=False``, runs it as the shell's child); (job id, name)."""
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
        # (a shell may exec a script's last command itself: one more after it)
        f"exec {sys.executable} {prog}" if exec_python else f"{sys.executable} {prog}\necho finished",
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
    err = (tmp_path / f"err-{job}.txt").read_text()
    assert out.read_text() == _reference(tmp_path, prog), err
    assert not (tmp_path / ".pyteleport").exists(), os.listdir(tmp_path / ".pyteleport")
    # one line at the save says what happened; no warning about the script
    err = "".join(line for line in err.splitlines(True) if not line.startswith("slurmstepd"))
    assert err == (f"pyteleport: saved the program to {tmp_path}/.pyteleport/job-{job}/ckpt.0; "
                   f"requeuing job {job} (restart 1 of at most 3)\n"), err


def test_protect_warns_when_the_script_does_not_exec_python(tmp_path):
    job, name, prog = _submit_own_script(tmp_path, requeue=True, max_restarts=3, exec_python=False)
    err = tmp_path / f"err-{job}.txt"
    _wait_text(err, "start Python with `exec python ...` in the batch script")
    sh("scancel", job)
    wait_job_done(job, timeout=60)
    lines = err.read_text().splitlines()
    assert lines[0].startswith("pyteleport: pyteleport.slurm.protect(): Python is not the job's batch "
                               "process (its parent is "), lines
    assert "Slurm's --signal=B:USR2@... reaches the shell, which dies of it" in lines[0], lines


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
from pyteleport.backends.slurm._follow import Follower
sys.exit(Follower(sys.argv[1], sys.argv[2]).run())
"""
    again = run_python(["-c", follow, job, str(stage)], tmp_path)
    assert again.returncode == 5, describe(again)
    assert again.stdout == "ready\n", describe(again)
    # a job Slurm does not list (as one that ended more than MinJobAge ago),
    # nothing in the stage: an id this controller never issues, not an old
    # one (a just-started Slurm gives id 1 to another test's job)
    old = never_issued_job_id()
    gone = run_python(["-c", follow, old, str(tmp_path)], tmp_path)
    assert gone.returncode == 1, describe(gone)
    assert f"slurm job {old} ended, but its exit status is unknown: Slurm no longer lists it" \
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
        while not os.path.exists("go"):      # until the test closed the source's stdout
            time.sleep(0.01)
        for i in range(3):
            say("after", i)
        sys.exit(3)
    """.replace("\n        ", "\n"))
    name = f"ptl-closed-{os.getpid()}-{time.monotonic_ns()}"
    proc = _source(tmp_path, prog, job_name=name)
    assert proc.stdout.readline() == "ready\n"
    proc.stdout.close()
    (tmp_path / "go").touch()
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


def flaky_scontrol(tmp_path):
    """A ``scontrol`` for the source's PATH that answers ``show job`` as a
    busy slurmctld does ("Socket timed out") while ``tmp_path/down`` exists,
    noting each failure in ``tmp_path/failed``; else the real one.
    ``(bin dir, down, failed)``."""
    import shutil
    bindir = tmp_path / "flaky-bin"
    bindir.mkdir()
    down, failed = tmp_path / "down", tmp_path / "failed"
    script = bindir / "scontrol"
    script.write_text(f"""#!/bin/sh
if [ "$1" = show ] && [ -e {down} ]; then
    echo failed >> {failed}
    echo "slurm_load_jobs error: Socket timed out on send/recv operation" >&2
    exit 1
fi
exec {shutil.which("scontrol")} "$@"
""")
    script.chmod(0o755)
    return bindir, down, failed


def wait_lines(path, count: int, proc=None, timeout: float = 60) -> None:
    """Wait until ``path`` has ``count`` lines (while ``proc`` runs)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and len(path.read_text().splitlines()) >= count):
        assert time.monotonic() < deadline, f"{path}: fewer than {count} lines within {timeout} s"
        assert proc is None or proc.poll() is None, f"the source ended (exit {proc.returncode})"
        time.sleep(0.02)


def test_waiting_source_outlasts_slurm_not_answering(tmp_path):
    """slurmctld does not answer the source for a while (busy, restarting):
    the source asks again and, once it answers, exits with the job's exit
    code after its whole output, as if nothing happened."""
    prog = write_program(tmp_path, PRELUDE + """
        import time
        pyteleport.teleport(backend="slurm", **OPTIONS)
        print("ready", flush=True)
        while not os.path.exists("go"):      # until the test has seen the source fail to ask
            time.sleep(0.01)
        say("after")
        sys.exit(3)
    """.replace("\n        ", "\n"))
    bindir, down, failed = flaky_scontrol(tmp_path)
    name = f"ptl-unavailable-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, TEST_SLURM_MOVE="1", PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}",
               **_env(tmp_path, wait=True, job_name=name))
    proc = subprocess.Popen([sys.executable, str(prog)], cwd=tmp_path, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "source.err", "w"))
    try:
        seen = _read_until(proc, "ready\n")
        down.touch()
        wait_lines(failed, 3, proc)             # the source asked, and asked again
        (tmp_path / "go").touch()
        [job] = _jobs_named(name)
        assert wait_job_done(job)["JobState"] == "FAILED"     # ended while slurm did not answer
        wait_lines(failed, len(failed.read_text().splitlines()) + 1, proc)
        down.unlink()
        rest = proc.stdout.read()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = (tmp_path / "source.err").read_text()
    assert "".join(seen) + rest == "ready\nMOVED after\n", err
    assert proc.returncode == 3, err
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")
