"""The ``slurm`` backend against a real single-node Slurm on this machine
(``slurm/``, started once per session by the ``slurm_cluster`` fixture).

Few and fast: a differential scenario and exit codes with ``wait=True``,
``wait=False`` with the output in the job's file, partition selection, an
array job, the handoff failures (sbatch refuses, the job cannot start
Python) with the program carrying on, and a job that survives a time-limit
warning mid-loop with the output of an uninterrupted run: once sent with
``scancel --batch --signal``, once by Slurm itself at a real ``--time`` limit.
"""
import json
import os
import re
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
    m = re.search(r"submitted batch job (\d+)", stderr)
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
        time.sleep(1)
        say("after", os.environ["SLURM_JOB_ID"])
    """.replace("\n        ", "\n"))
    started = time.monotonic()
    proc = run_python([prog], tmp_path, env_extra=_env(tmp_path, wait=False))
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "SAME before\n", describe(proc)
    job = _job_id(proc.stderr)
    assert elapsed < 5, elapsed          # did not wait for the job's 1 s of work
    fields = wait_job_done(job)
    assert fields["JobState"] == "COMPLETED", fields
    assert (tmp_path / f"job-{job}.out").read_text() == f"MOVED after {job}\n"
    assert _stage_clean(tmp_path)


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


def test_time_limit_signal_requeues_and_resumes(tmp_path):
    prog = write_program(tmp_path, LOOP)
    reference = run_python([prog], tmp_path)
    assert reference.returncode == 0, describe(reference)
    name = f"ptl-limit-{os.getpid()}-{time.monotonic_ns()}"
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
    """Slurm's own time-limit warning (--time=1 min, --signal=B:USR2@55): the
    work takes ~45 s, longer than the latest the warning can come (slurmctld
    checks limits about every 30 s), so the job is interrupted at least once,
    wherever it is, and must still print what an uninterrupted run prints."""
    prog = write_program(tmp_path, SLOW_LOOP)
    reference = run_python([prog], tmp_path)          # STEP 0: same output, no waiting
    assert reference.returncode == 0, describe(reference)
    name = f"ptl-time-{os.getpid()}-{time.monotonic_ns()}"
    env = dict(os.environ, PYTHONIOENCODING="utf-8", TEST_SLURM_MOVE="1", TEST_STEP_SECONDS="0.5",
               **_env(tmp_path, wait=True, requeue=True, time="00:01:00", grace=55,
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
    assert int(fields["Restarts"]) >= 1, fields
    assert _stage_clean(tmp_path), os.listdir(tmp_path / "stage")
