"""pyteleport.task_index() in launches that are not pyteleport's: the user's
own ``mpiexec``, ``sbatch --array`` and ``srun`` (the real MPICH and Slurm)."""

import os
import subprocess
import sys

import pytest

import mpilaunch
from progs import describe, write_program
from slurmctl import wait_job_done

PROGRAM = """\
import os, sys
import pyteleport
tag = sys.argv[1] if len(sys.argv) > 1 else "plain"
os.write(1, f"{tag} {pyteleport.task_index()}\\n".encode())   # one write: ranks share the pipe
"""

# the variables a launcher sets, which the test runner's own environment must not carry in
_LAUNCH_PREFIXES = ("SLURM_", "PMI_", "PMIX_", "OMPI_", "MV2_", "HYDRA_")


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LAUNCH_PREFIXES)}
    env["PYTHONPATH"] = mpilaunch.mpi_env()["PYTHONPATH"]
    return env


def test_outside_any_launch_it_is_none(tmp_path):
    prog = write_program(tmp_path, PROGRAM)
    proc = subprocess.run([sys.executable, str(prog)], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "plain None\n", describe(proc)


def test_under_mpiexec_it_is_the_rank(tmp_path):
    prog = write_program(tmp_path, PROGRAM)
    proc = mpilaunch.run(mpilaunch.mpiexec(3, sys.executable, prog, "mpi"), tmp_path, timeout=120)
    assert proc.returncode == 0, mpilaunch.describe(proc)
    assert sorted(proc.stdout.splitlines()) == ["mpi 0", "mpi 1", "mpi 2"], mpilaunch.describe(proc)


@pytest.mark.usefixtures("slurm_cluster")
def test_in_a_slurm_array_job_and_an_srun_step(tmp_path):
    prog = write_program(tmp_path, PROGRAM)
    py = f"{sys.executable} {prog}"
    # the batch step of a 2-task job is no fan-out; its srun step of 2 tasks is
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\n{py} batch-$SLURM_ARRAY_TASK_ID\n"
                      f"srun -n 2 {py} step-$SLURM_ARRAY_TASK_ID\n")
    submit = subprocess.run(["sbatch", "--parsable", "--array=0,2", "-n", "2", "-o",
                             str(tmp_path / "out.%a"), str(script)], cwd=tmp_path, env=_clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert submit.returncode == 0, describe(submit)
    job = submit.stdout.strip().split(";")[0]
    for task in ("0", "2"):
        state = wait_job_done(f"{job}_{task}", timeout=120).get("JobState")
        assert state == "COMPLETED", (task, state, (tmp_path / f"out.{task}").read_text())
    lines = {task: sorted((tmp_path / f"out.{task}").read_text().splitlines()) for task in ("0", "2")}
    assert lines == {
        "0": ["batch-0 0", "step-0 0", "step-0 1"],
        "2": ["batch-2 2", "step-2 0", "step-2 1"],
    }, lines


def test_pyteleports_own_index_comes_first(tmp_path):
    """In a fan-out of pyteleport's, the index it gave wins over the variables
    of the launch around it (here: a stray SLURM_ARRAY_TASK_ID)."""
    prog = write_program(tmp_path, """\
        import os
        import pyteleport
        pyteleport.teleport("mpirun", n=2)
        # one write per rank: the launcher interleaves the ranks' writes
        os.write(1, f"moved {pyteleport.task_index()}\\n".encode())
        """)
    proc = mpilaunch.run([sys.executable, prog], tmp_path, timeout=120, SLURM_ARRAY_TASK_ID="7")
    assert proc.returncode == 0, mpilaunch.describe(proc)
    assert sorted(proc.stdout.splitlines()) == ["moved 0", "moved 1"], mpilaunch.describe(proc)

