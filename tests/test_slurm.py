"""The ``slurm`` backend against a real single-node Slurm on this machine
(``slurm/``, started once per session by the ``slurm_cluster`` fixture).

Few and fast: a differential scenario and exit codes with ``wait=True``,
``wait=False`` with the output in the job's file, partition selection, an
array job, the handoff failures (sbatch refuses, the job cannot start
Python) with the program carrying on, and a job that survives a time-limit
warning mid-loop with the output of an uninterrupted run: once sent with
``scancel --batch --signal``, once by Slurm itself at a real ``--time`` limit,
and twice before the program runs (during ``setup``, while it is rebuilt).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from harness import assert_differential
from progs import describe, run_python, write_program
from slurmctl import wait_job_done

pytestmark = pytest.mark.usefixtures("slurm_cluster")

PRELUDE = """\
import json, os, sys
import pyteleport

START = os.getpid()
OPTIONS = json.loads(os.environ.get("TEST_SLURM_OPTIONS", "{}"))


def say(*args):
    print("SAME" if os.getpid() == START else "MOVED", *args, flush=True)
"""


def _options(tmp_path, **options) -> dict:
    options.setdefault("stage_dir", str(tmp_path / "stage"))
    options.setdefault("output", str(tmp_path / "job-%j.out"))
    options.setdefault("error", str(tmp_path / "job-%j.err"))
    return options


def _env(tmp_path, **options) -> dict:
    return {"TEST_SLURM_OPTIONS": json.dumps(_options(tmp_path, **options))}


def _stage_clean(tmp_path) -> bool:
    """No file of the move is left in the stage directory (removed once empty)."""
    stage = tmp_path / "stage"
    return not stage.exists() or not os.listdir(stage)


def _job_id(stderr: str) -> str:
    m = re.search(r"\bslurm job (\d+)", stderr)
    assert m, stderr
    return m.group(1)


@pytest.mark.parametrize("name,args", [("s05_loops.py", ["nested"]), ("s01_nested.py", [])])
def test_scenario_over_slurm(tmp_path, name, args):
    env = {"SCENARIO_SLURM_OPTIONS": json.dumps(_options(tmp_path, wait=True))}
    assert_differential(name, args=args, modes=("none", "slurm"), extra_env=env)
    assert _stage_clean(tmp_path)


def test_exit_code_and_stderr_over_slurm(tmp_path):
    env = {"SCENARIO_SLURM_OPTIONS": json.dumps(_options(tmp_path, wait=True))}
    results = assert_differential("s18_exit.py", args=["exit_message"], modes=("none", "slurm"),
                                  extra_env=env, returncode=1,
                                  exception_line="fatal: configuration missing")
    assert results["slurm"].returncode == 1


def test_wait_false_leaves_the_job_running(tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
        say("before")
        pyteleport.teleport(backend="slurm", **OPTIONS)
        import time
        while not os.path.exists("go"):      # until the test saw the source return
            time.sleep(0.01)
        say("after", os.environ["SLURM_JOB_ID"])
    """.replace("\n        ", "\n"))
    proc = run_python([prog], tmp_path, env_extra=_env(tmp_path, wait=False))
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "SAME before\n", describe(proc)
    job = _job_id(proc.stderr)
    assert proc.stderr == (f"pyteleport: submitted slurm job {job}; its output is in "
                           f"{tmp_path}/job-{job}.out and {tmp_path}/job-{job}.err; pyteleport is "
                           f"not following it (wait=False)\n"), describe(proc)
    # the source returned while the job could not have ended: it did not wait for it
    assert wait_job_done(job, timeout=0)["JobState"] in ("PENDING", "RUNNING"), describe(proc)
    (tmp_path / "go").touch()
    fields = wait_job_done(job)
    assert fields["JobState"] == "COMPLETED", fields
    assert (tmp_path / f"job-{job}.out").read_text() == f"MOVED after {job}\n"
    assert _stage_clean(tmp_path)


WRITES_BOTH = PRELUDE + """
say("before")
pyteleport.teleport(backend="slurm", **OPTIONS)
say("job", os.environ["SLURM_JOB_ID"])
print("to stderr", file=sys.stderr, flush=True)
"""


@pytest.mark.parametrize("wait", [True, False])
def test_the_job_writes_the_same_files_followed_or_not(tmp_path, wait):
    """Without output/error options, slurm-<job>.out and .err hold the job's
    stdout and stderr, whether the source follows the job or not."""
    prog = write_program(tmp_path, WRITES_BOTH)
    options = {"stage_dir": str(tmp_path / "stage"), "wait": wait}
    proc = run_python([prog], tmp_path, env_extra={"TEST_SLURM_OPTIONS": json.dumps(options)})
    assert proc.returncode == 0, describe(proc)
    job = proc.stdout.split()[-1] if wait else _job_id(proc.stderr)
    assert wait_job_done(job)["JobState"] == "COMPLETED"
    assert (tmp_path / f"slurm-{job}.out").read_text() == f"MOVED job {job}\n"
    assert (tmp_path / f"slurm-{job}.err").read_text() == "to stderr\n"
    if wait:    # followed: the same lines on the source's own streams
        assert proc.stdout == f"SAME before\nMOVED job {job}\n" and "to stderr\n" in proc.stderr, describe(proc)
    else:       # not a terminal: said once, with where the output goes and why not followed
        assert proc.stderr == (f"pyteleport: submitted slurm job {job}; its output is in slurm-{job}.out "
                               f"and slurm-{job}.err; pyteleport is not following it (wait=False)\n")
    assert _stage_clean(tmp_path)


def test_wait_left_out_is_explained_when_stdout_is_not_a_terminal(tmp_path):
    prog = write_program(tmp_path, WRITES_BOTH)
    options = {"stage_dir": str(tmp_path / "stage")}
    proc = run_python([prog], tmp_path, env_extra={"TEST_SLURM_OPTIONS": json.dumps(options)})
    assert proc.returncode == 0, describe(proc)
    job = _job_id(proc.stderr)
    assert proc.stderr.endswith("pyteleport is not following it (wait=False: stdout is not a "
                                "terminal; wait=True follows it)\n"), describe(proc)
    assert wait_job_done(job)["JobState"] == "COMPLETED"


UNTIL_GO = PRELUDE + """
import time
pyteleport.teleport(backend="slurm", **OPTIONS)
say("started", os.environ["SLURM_JOB_ID"])
while not os.path.exists("go"):
    time.sleep(0.02)
say("finished")
sys.exit(3)
"""


def test_a_hang_up_leaves_the_job_running_and_follow_takes_over(tmp_path):
    """SIGHUP to a following source (the login session dropped): the job
    goes on, the source says how to follow it again and exits 129;
    ``pyteleport follow`` copies the job's output to its end and exits with
    its code; the job cleans its stage up itself."""
    prog = write_program(tmp_path, UNTIL_GO)
    env = dict(os.environ, **_env(tmp_path, wait=True))
    source = subprocess.Popen([sys.executable, str(prog)], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = source.stdout.readline()
    assert first.startswith("MOVED started "), first
    job = first.split()[-1]
    source.send_signal(signal.SIGHUP)
    out, err = source.communicate(timeout=60)
    assert source.returncode == 129, (out, err)
    assert (f"pyteleport: the session hung up: slurm job {job} goes on without pyteleport following it; "
            f"its output is in {tmp_path}/job-{job}.out and {tmp_path}/job-{job}.err; follow it "
            f"again with: pyteleport follow {job}\n") in err, err
    assert wait_job_done(job, timeout=0)["JobState"] == "RUNNING"
    follow = subprocess.Popen([sys.executable, "-m", "pyteleport", "follow", job], cwd=tmp_path, env=env,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert follow.stdout.readline() == f"MOVED started {job}\n"    # from the file's start
    (tmp_path / "go").touch()
    out, err = follow.communicate(timeout=60)
    assert follow.returncode == 3 and out == "MOVED finished\n", (out, err)
    assert wait_job_done(job)["JobState"] == "FAILED"      # exit code 3
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")


def test_a_job_that_can_never_start_is_said_and_ctrl_c_cancels_it(tmp_path):
    """Two nodes on a one-node cluster: pending with PartitionNodeLimit,
    which the source says at once; Ctrl-C cancels the job and reaches the
    program at its teleport() call, with no pyteleport internals in the traceback."""
    prog = write_program(tmp_path, PRELUDE + """
        pyteleport.teleport(backend="slurm", **OPTIONS)   # TELEPORT
        say("never")
    """.replace("\n        ", "\n"))
    env = dict(os.environ, **_env(tmp_path, wait=True, nodes=2))
    source = subprocess.Popen([sys.executable, str(prog)], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = source.stderr.readline()
    assert "is pending with reason PartitionNodeLimit: it asks for more nodes than its partition " \
           "has" in line and "may never start as submitted (Ctrl-C cancels it" in line, line
    job = _job_id(line)
    source.send_signal(signal.SIGINT)
    out, err = source.communicate(timeout=60)
    assert source.returncode != 0 and out == "", (out, err)
    assert f"pyteleport: cancelled slurm job {job} (interrupted before it resumed the program)" in err, err
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', err)
    names = [os.path.basename(f) for f, _ in frames]
    assert names[0] == "prog.py" and set(names[1:]) == {"api.py"}, err
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert wait_job_done(job)["JobState"] == "CANCELLED"
    assert _stage_clean(tmp_path)


def test_setup_runs_in_a_login_bash(tmp_path):
    """``setup`` lines run as in a user's own sbatch script: bash, as a login
    shell (module load, conda activate, source venv/bin/activate)."""
    prog = write_program(tmp_path, PRELUDE + """
        pyteleport.teleport(backend="slurm", **OPTIONS)
        say(os.environ.get("PTL_SHELL"))
    """.replace("\n        ", "\n"))
    setup = 'shopt -q login_shell && export PTL_SHELL="login bash $BASH_VERSINFO"'
    proc = run_python([prog], tmp_path, env_extra=_env(tmp_path, wait=True, setup=setup))
    assert proc.returncode == 0, describe(proc)
    assert re.fullmatch(r"MOVED login bash \d+\n", proc.stdout), describe(proc)


def test_partition_and_sbatch_options(tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
        pyteleport.teleport(backend="slurm", **OPTIONS)
        say(os.environ["SLURM_JOB_PARTITION"], os.environ["SLURM_JOB_NAME"], os.environ["SLURM_CPUS_PER_TASK"])
    """.replace("\n        ", "\n"))
    proc = run_python([prog], tmp_path, env_extra=_env(
        tmp_path, wait=True, partition="gpu", cpus_per_task=2, sbatch_options={"job_name": "ptl-test"}))
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "MOVED gpu ptl-test 2\n", describe(proc)


def test_array_job_task_indices(tmp_path):
    prog = write_program(tmp_path, PRELUDE + """
        data = [10, 20, 30, 40]
        say("before", pyteleport.task_index())
        pyteleport.teleport(backend="slurm", **OPTIONS)
        i = pyteleport.task_index()
        import time
        for k in range(3):
            # a line written in two parts while other tasks write theirs: the
            # source copies the tasks' files to one stdout, whole lines only
            print("MOVED task", i, end="", flush=True)
            time.sleep(0.2)
            print("", data[i], os.environ["SLURM_ARRAY_TASK_ID"], "line", k, flush=True)
    """.replace("\n        ", "\n"))
    proc = run_python([prog], tmp_path, env_extra=_env(
        tmp_path, wait=True, array=4, output=str(tmp_path / "job-%A_%a.out"),
        error=str(tmp_path / "job-%A_%a.err")))
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0] == "SAME before None", describe(proc)
    assert sorted(lines[1:]) == [f"MOVED task {i} {10 * (i + 1)} {i} line {k}"
                                 for i in range(4) for k in range(3)], describe(proc)


@pytest.mark.parametrize("options,reason", [
    (dict(partition="no-such-partition"), "sbatch refused the job: sbatch: error: "
                                          "invalid partition specified: no-such-partition"),
    (dict(python="/nonexistent/python3"), "before it resumed the program; its stderr: "),
])
def test_failed_handoff_carries_on(tmp_path, options, reason):
    prog = write_program(tmp_path, PRELUDE + """
        values = [1, 2]
        try:
            pyteleport.teleport(backend="slurm", **OPTIONS)
        except pyteleport.TeleportError as e:
            say("refused:", e)
        values.append(3)
        say("carried on", values)
    """.replace("\n        ", "\n"))
    proc = run_python([prog], tmp_path, env_extra=_env(tmp_path, wait=True, **options))
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("SAME refused: slurm"), describe(proc)
    assert reason in lines[0], describe(proc)
    assert lines[1] == "SAME carried on [1, 2, 3]", describe(proc)
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")


def test_unpackable_program_cancels_the_early_job(tmp_path):
    """The job is submitted while the program is packed: if packing fails
    (a live thread), the job is cancelled and the program carries on."""
    name = f"ptl-unpackable-{os.getpid()}-{time.monotonic_ns()}"
    prog = write_program(tmp_path, PRELUDE + """
        import threading
        stop = threading.Event()
        worker = threading.Thread(target=stop.wait)
        worker.start()
        try:
            pyteleport.teleport(backend="slurm", **OPTIONS)
        except pyteleport.TeleportError as e:
            say("refused:", type(e).__name__)
        stop.set()
        worker.join()
        say("carried on")
    """.replace("\n        ", "\n"))
    proc = run_python([prog], tmp_path, env_extra=_env(tmp_path, wait=True, job_name=name))
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "SAME refused: TeleportError\nSAME carried on\n", describe(proc)
    jobs = subprocess.run(["squeue", "-h", "-t", "all", "--name", name, "-o", "%i"],
                          capture_output=True, text=True).stdout.split()
    assert len(jobs) == 1, jobs
    assert wait_job_done(jobs[0])["JobState"] == "CANCELLED"
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")


def test_source_killed_before_staging_cancels_the_pending_job(tmp_path):
    """The source dies by SIGKILL while it packs the program, after sbatch
    (an object whose pickling kills the process): the job, held pending by
    ``--begin``, is cancelled at once rather than left in the queue, and
    the stage is removed; nothing keeps running."""
    name = f"ptl-killed-{os.getpid()}-{time.monotonic_ns()}"
    prog = write_program(tmp_path, PRELUDE + """
        import signal

        class Fatal:
            def __reduce__(self):
                os.kill(os.getpid(), signal.SIGKILL)

        fatal = Fatal()
        pyteleport.teleport(backend="slurm", **OPTIONS)
        say("never here", fatal)
    """.replace("\n        ", "\n"))
    env = _env(tmp_path, wait=True, job_name=name, sbatch_options={"begin": "now+600"})
    proc = run_python([prog], tmp_path, env_extra=env)
    assert proc.returncode == -9, describe(proc)
    jobs = subprocess.run(["squeue", "-h", "-t", "all", "--name", name, "-o", "%i"],
                          capture_output=True, text=True).stdout.split()
    assert len(jobs) == 1, jobs
    assert wait_job_done(jobs[0], timeout=10)["JobState"] == "CANCELLED"
    deadline = time.monotonic() + 10
    while not _stage_clean(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)        # the watcher removes it right after scancel
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")
    watcher = f"pyteleport-reaper {jobs[0]} "

    def watcher_running() -> bytes:
        return subprocess.run(["pgrep", "-f", watcher], capture_output=True).stdout

    # it ends right after removing the stage: wait for that, do not look once
    deadline = time.monotonic() + 10
    while watcher_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not watcher_running()


LOOP = PRELUDE + """
import time
if os.environ.get("TEST_SLURM_MOVE") == "1":
    pyteleport.teleport(backend="slurm", **OPTIONS)
total, squares = 0, {}
for i in range(40):
    squares[i] = i * i
    total += squares[i]
    print("step", i, total, flush=True)
    if i == 5:
        print("ready", flush=True)
    t = time.time()
    while time.time() - t < 0.05:     # busy: the signal lands mid-loop, in Python code
        pass
print("done", total, sum(squares.values()), flush=True)
"""


def _warned_once_ready(tmp_path, text: str, prefix: str):
    """Run ``text``, which moves itself into a protected job, and send the
    job the time-limit warning once it printed ``ready``; check the output
    is an unmoved run's, the job requeued once and the stage clean.
    Returns the source's stderr."""
    prog = write_program(tmp_path, text)
    reference = run_python([prog], tmp_path)
    assert reference.returncode == 0, describe(reference)
    name = f"{prefix}-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONIOENCODING="utf-8", TEST_SLURM_MOVE="1",
               **_env(tmp_path, wait=True, requeue=True, grace=60, job_name=name))
    err_file = open(tmp_path / "source.err", "w+")
    proc = subprocess.Popen([sys.executable, str(prog)], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=err_file)
    try:
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if line == "ready\n":
                break
        job = subprocess.run(["squeue", "-h", "-o", "%i", "--name", name], capture_output=True,
                             text=True).stdout
        ids = job.split()
        assert len(ids) == 1, job
        subprocess.run(["scancel", "--batch", "--signal=USR2", *ids], check=True)
        import threading
        watchdog = threading.Timer(120, proc.kill)
        watchdog.start()
        rest = proc.stdout.read()      # (not communicate(): it would skip what `for` buffered)
        proc.wait(timeout=90)
        watchdog.cancel()
    finally:
        if proc.poll() is None:
            proc.kill()
        err_file.seek(0)
        err = err_file.read()
        err_file.close()
    out = "".join(seen) + rest
    assert proc.returncode == 0, (out, err)
    assert out == reference.stdout, (out, err)
    fields = wait_job_done(ids[0])
    assert fields["Restarts"] == "1", fields
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")
    return err


def test_time_limit_signal_requeues_and_resumes(tmp_path):
    _warned_once_ready(tmp_path, LOOP, "ptl-limit")


# a thread still running when the warning comes: the snapshot is refused,
# tried again every second, and taken once the thread has ended
LOOP_WITH_THREAD = LOOP.replace("""    if i == 5:
        print("ready", flush=True)""", """    if i == 5:
        import threading
        helper = threading.Thread(target=time.sleep, args=(2.5,), name="late-helper")
        helper.start()
        print("ready", flush=True)""").replace("range(40)", "range(120)")


def test_time_limit_signal_waits_for_a_running_thread(tmp_path):
    err = _warned_once_ready(tmp_path, LOOP_WITH_THREAD, "ptl-thread")
    assert "'late-helper'" in err and "trying again" in err, err     # refused first, then retried


# rebuilt in the job: sends the warning there, while the program is restored
# (the first job only: the requeued one resumes without it)
WARN_IN_RESTORE = """
import signal


class WarnWhenRestored:
    def __init__(self):
        self.sent = 0

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "SLURM_JOB_ID" in os.environ and not int(os.environ.get("SLURM_RESTART_COUNT") or 0):
            os.kill(os.getpid(), signal.SIGUSR2)


WARN = WarnWhenRestored()
"""


def _requeued_before_running(tmp_path, text: str, **options) -> None:
    """A protected job warned before its program runs is requeued; the output
    is an unmoved run's, the stage clean."""
    prog = write_program(tmp_path, text)
    reference = run_python([prog], tmp_path)
    assert reference.returncode == 0, describe(reference)
    name = f"ptl-early-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONIOENCODING="utf-8", TEST_SLURM_MOVE="1",
               **_env(tmp_path, wait=True, requeue=True, grace=60, job_name=name, **options))
    proc = subprocess.run([sys.executable, str(prog)], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == reference.stdout, describe(proc)
    ids = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i", "--name", name],
                         capture_output=True, text=True).stdout.split()
    assert len(ids) == 1, ids
    fields = wait_job_done(ids[0])
    assert fields["Restarts"] == "1", fields
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")


def test_warning_during_setup_requeues_before_running(tmp_path):
    """The warning lands while the batch script runs ``setup`` (the first job
    only): the job is requeued with the payload as its snapshot."""
    _requeued_before_running(tmp_path, LOOP,
                             setup='[ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] || kill -USR2 $$')


def test_warning_while_python_starts_requeues_before_running(tmp_path):
    """The warning lands while the job's Python starts, before the entry's
    first statement (sent by a sitecustomize the job's setup puts first on
    the path, in the first job only): kept pending, the job is requeued with
    the payload as its snapshot."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, signal\n"
        "if os.environ.get('SLURM_JOB_ID') and not int(os.environ.get('SLURM_RESTART_COUNT') or 0):\n"
        "    os.kill(os.getpid(), signal.SIGUSR2)\n")
    _requeued_before_running(tmp_path, LOOP, setup=f'export PYTHONPATH="{hook}${{PYTHONPATH:+:$PYTHONPATH}}"')


def test_warning_while_restoring_requeues_before_running(tmp_path):
    """The warning lands while the job rebuilds the program: held until it is
    rebuilt, then the job is requeued with the payload as its snapshot."""
    _requeued_before_running(tmp_path, LOOP.replace(PRELUDE, PRELUDE + WARN_IN_RESTORE))


SLOW_LOOP = PRELUDE + """
import time
STEP = float(os.environ.get("TEST_STEP_SECONDS", "0"))
if os.environ.get("TEST_SLURM_MOVE") == "1":
    pyteleport.teleport(backend="slurm", **OPTIONS)
total, squares = 0, {}
for i in range(90):
    squares[i] = i * i
    total += squares[i]
    print("step", i, total, flush=True)
    t = time.time()
    while time.time() - t < STEP:     # busy: the warning lands mid-loop, in Python code
        pass
print("done", total, sum(squares.values()), flush=True)
"""


def test_real_time_limit_requeues_and_resumes(tmp_path):
    """Slurm's own time-limit warning (--time=1 min, --signal=B:USR2@25):
    slurmctld checks limits every 30 s and sends a warning due before its
    next check at once, so it comes 5 to 35 s after the job starts; the work
    takes ~45 s, so the job is interrupted at least once, wherever it is, and
    must still print what an uninterrupted run prints.  (A grace of 30 s or
    more would let the warning come at the job's first check, possibly before
    the batch script runs, where slurmd drops it: the backend says so.)"""
    prog = write_program(tmp_path, SLOW_LOOP)
    reference = run_python([prog], tmp_path)          # STEP 0: same output, no waiting
    assert reference.returncode == 0, describe(reference)
    name = f"ptl-time-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONIOENCODING="utf-8", TEST_SLURM_MOVE="1", TEST_STEP_SECONDS="0.5",
               **_env(tmp_path, wait=True, requeue=True, time="00:01:00", grace=25,
                      max_restarts=6, job_name=name))
    proc = subprocess.run([sys.executable, str(prog)], cwd=tmp_path, env=env, text=True,
                          capture_output=True, timeout=420)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == reference.stdout, describe(proc)
    job = re.search(r"batch job (\d+)", proc.stderr)
    ids = [job.group(1)] if job else subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%i", "--name", name], capture_output=True,
        text=True).stdout.split()
    assert ids, describe(proc)
    fields = wait_job_done(ids[0])
    assert int(fields["Restarts"]) >= 1, (fields, proc.stderr)
    assert "pyteleport: slurm backend: with time=" not in proc.stderr, proc.stderr
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")


SLOW_REBUILD = PRELUDE + """
class Slow:
    def __setstate__(self, state):
        # runs while the job rebuilds the program
        if os.environ.get("SLURM_JOB_ID"):
            open("rebuilding", "w").close()
            import time
            time.sleep(60)
        self.__dict__.update(state)


slow = Slow()
slow.x = 1
try:
    pyteleport.teleport(backend="slurm", **OPTIONS)
except pyteleport.TeleportError as e:
    say("refused:", str(e).split(": ", 1)[1])
say("ran", slow.x)
"""


@pytest.mark.parametrize("wait", [False, True])
def test_a_job_cancelled_while_it_rebuilds_leaves_nothing_in_the_stage(tmp_path, wait):
    """scancel before the program runs: the payload (which nobody would
    ever resume) and the status go, and the stage once empty; a following
    source gets a TeleportError and its program carries on there."""
    prog = write_program(tmp_path, SLOW_REBUILD)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", **_env(tmp_path, wait=wait)}
    source = subprocess.Popen([sys.executable, prog], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "rebuilding").exists():
            assert time.monotonic() < deadline and source.poll() in (None, 0), source.communicate()
            time.sleep(0.05)
        # the job running in this test's folder
        job, = [line.split()[0] for line in subprocess.run(
            ["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True, check=True).stdout.splitlines()
            if line.split()[1:] == [str(tmp_path)]]
        assert [p.name for p in (tmp_path / "stage").rglob("payload.*")], "the payload should be there"
        subprocess.run(["scancel", job], check=True)
        out, err = source.communicate(timeout=60)
    finally:
        if source.poll() is None:
            source.kill()
            source.wait()
    assert source.returncode == 0, (out, err)
    assert wait_job_done(job)["JobState"] == "CANCELLED"
    assert _stage_clean(tmp_path), list((tmp_path / "stage").rglob("*"))
    assert (tmp_path / f"job-{job}.out").read_text() == ""
    assert "cancelled while it rebuilt the program" in (tmp_path / f"job-{job}.err").read_text()
    if wait:    # the move failed: the program carries on in the source
        refused, ran = out.splitlines()[-2:]
        assert refused.startswith("SAME refused: ") and ran == "SAME ran 1", (out, err)
        assert refused.endswith("could not resume the program: the job was cancelled (SIGTERM) while it "
                                "rebuilt the program"), (out, err)
    else:
        assert out == "", (out, err)
