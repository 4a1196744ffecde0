"""Checkpointing and moving a running MPI job's ranks (pyteleport.mpi),
against a real MPICH (mpiexec next to this interpreter) and mpi4py.

Differential: an MPI program (each rank advances a NumPy state with a halo
exchange, reductions over COMM_WORLD and over communicators made with
pyteleport.mpi.dup/split/create) run uninterrupted under mpiexec is the
reference.  The same program checkpointed at a step and resumed with
``mpiexec -n N python -m pyteleport resume DIR`` (or moved with
pyteleport.mpi.teleport) must print, rank by rank, the very same lines, the
lines after the move from new processes.  Every refusal is checked for its
one-line message and exit code, and for leaving the program running.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from mpilaunch import LAUNCHER, describe, mpi_env, mpiexec
from mpilaunch import run as run_in

TIMEOUT = 50

PROGRAM = """\
import os, sys
import numpy as np
from mpi4py import MPI
import pyteleport, pyteleport.mpi

MODE = os.environ.get("MODE", "none")          # none, checkpoint, teleport
AT = [int(s) for s in os.environ.get("AT", "2").split(",")]
comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


def say(*args):
    line = " ".join([f"rank={rank} pid={os.getpid()}", *map(str, args)]) + "\\n"
    sys.stdout.flush()
    os.write(1, line.encode())          # one write: ranks' lines do not interleave


def advance(u, comms):
    left, right = (rank - 1) % size, (rank + 1) % size
    halo_l = comm.sendrecv(u[-1], dest=right, source=left)
    halo_r = comm.sendrecv(u[0], dest=left, source=right)
    u = u.copy()
    u[0] += 0.25 * halo_l
    u[-1] += 0.25 * halo_r
    return 0.5 * u + np.sin(np.arange(u.size) + rank)


def run(nsteps):
    pairs = pyteleport.mpi.split(comm, rank % 2, key=-rank)      # odd and even ranks
    twin = pyteleport.mpi.dup(pairs)
    solo = comm.Get_group().Incl([0])                                # a group travels too
    first = pyteleport.mpi.create(comm, solo)                         # rank 0 only
    u = np.linspace(0, 1, 16) * (rank + 1)
    moves = 0
    for step in range(nsteps):
        u = advance(u, (pairs, twin))
        total = comm.allreduce(float(u.sum()))
        in_pair = pairs.allreduce(rank)
        alone = first.allreduce(rank) if first != MPI.COMM_NULL else "-"
        say("step", step, "total", repr(total), "pair", pairs.Get_rank(), in_pair,
            "twin", twin.allreduce(1), "first", alone, "solo", solo.Get_size(), solo.Get_rank())
        if step in AT and MODE == "checkpoint":
            if not pyteleport.mpi.checkpoint(os.environ["DIR"] + str(moves)):
                sys.exit(0)                 # stop here: the test resumes the directory
            moves += 1
        elif step in AT and MODE == "teleport":
            pyteleport.mpi.teleport(backend="mpirun")
        elif step in AT and MODE == "slurm":
            pyteleport.mpi.teleport(backend="slurm", wait=True, stage_dir=os.environ["STAGE"],
                                    output="job-%j.out", error="job-%j.err")
    return comm.reduce(float((u ** 2).sum()), root=0)


result = run(6)
if rank == 0:
    say("result", repr(result))
"""

LINE = re.compile(r"^rank=(\d+) pid=(\d+) (.*)$")


def run(cmd: List, cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    return run_in(cmd, cwd, TIMEOUT, **extra)


def by_rank(stdout: str) -> Dict[int, List[tuple]]:
    """Lines per rank, in order: (pid, text)."""
    out: Dict[int, List[tuple]] = {}
    for line in stdout.splitlines():
        m = LINE.match(line)
        assert m, f"unexpected output line {line!r}"
        out.setdefault(int(m.group(1)), []).append((int(m.group(2)), m.group(3)))
    return out


def texts(lines: List[tuple]) -> List[str]:
    return [t for _, t in lines]


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    return path


def reference(program: Path, n: int) -> Dict[int, List[tuple]]:
    proc = run(mpiexec(n, sys.executable, program), program.parent)
    assert proc.returncode == 0, describe(proc)
    return by_rank(proc.stdout)


def checkpointed(program: Path, n: int, at: str) -> List[subprocess.CompletedProcess]:
    """Run with checkpoints at the steps ``at``, stopping after each, and
    resume each directory in turn; the runs, in order."""
    cwd = program.parent
    steps = [run(mpiexec(n, sys.executable, program), cwd, MODE="checkpoint", AT=at, DIR="ckpt")]
    for i in range(len(at.split(","))):
        assert steps[-1].returncode == 0, describe(steps[-1])
        steps.append(run(mpiexec(n, sys.executable, "-m", "pyteleport", "resume", f"ckpt{i}"), cwd))
    assert steps[-1].returncode == 0, describe(steps[-1])
    return steps


def assert_same_per_rank(stretches: List[Dict[int, List[tuple]]], want: Dict[int, List[tuple]]) -> None:
    """The stretches' lines, joined per rank, equal the reference's; every
    stretch of a rank comes from one process, a new one each time."""
    for rank, lines in want.items():
        got = [line for stretch in stretches for line in stretch.get(rank, [])]
        assert texts(got) == texts(lines), f"rank {rank}"
        pids = [{pid for pid, _ in stretch.get(rank, [])} for stretch in stretches]
        assert all(len(p) == 1 for p in pids), pids
        assert len(set().union(*pids)) == len(stretches), pids


@pytest.mark.parametrize("n, at", [(2, "2"), (2, "1,3"), (4, "2")])
def test_checkpoint_resume_matches_reference(program: Path, n: int, at: str) -> None:
    want = reference(program, n)
    steps = checkpointed(program, n, at)
    assert_same_per_rank([by_rank(s.stdout) for s in steps], want)
    assert all(s.stderr == "" for s in steps), [s.stderr for s in steps]
    # the directory is what the documentation says
    ckpt = program.parent / "ckpt0"
    manifest = (ckpt / "MANIFEST").read_text().splitlines()
    assert manifest[2:5] == ["slot a", f"ranks {n}", "python %d.%d" % sys.version_info[:2]]
    assert sorted(p.name for p in ckpt.iterdir()) == ["MANIFEST"] + [f"rank-{i}.a.pyteleport" for i in range(n)]
    assert ckpt.stat().st_mode & 0o777 == 0o700
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in ckpt.iterdir())


SINGLE = """\
import os, sys
from mpi4py import MPI
import pyteleport, pyteleport.mpi
comm = MPI.COMM_WORLD
mine = pyteleport.mpi.dup(comm)
acc = [comm.Get_size()]
for i in range(4):
    acc.append(mine.allreduce(i) + acc[-1])
    if i == 1 and not pyteleport.mpi.checkpoint("one"):
        print("saved", os.getpid(), flush=True)
        sys.exit(0)
print("acc", acc, "rank", pyteleport.task_index(), "pid", os.getpid())
"""


def test_single_rank_directory_resumes_without_a_launcher(tmp_path: Path) -> None:
    (tmp_path / "one.py").write_text(SINGLE)
    saved = run([sys.executable, tmp_path / "one.py"], tmp_path)
    assert saved.returncode == 0 and saved.stdout.startswith("saved "), describe(saved)
    resumed = run([sys.executable, "-m", "pyteleport", "resume", "one"], tmp_path)
    assert resumed.returncode == 0, describe(resumed)
    words = resumed.stdout.split()
    assert words[:-1] == ["acc", "[1,", "1,", "2,", "4,", "7]", "rank", "0", "pid"], describe(resumed)
    assert words[-1] != saved.stdout.split()[1]


@pytest.fixture
def saved_dir(program: Path) -> Path:
    """A 2-rank checkpoint directory of the program (taken at step 2)."""
    proc = run(mpiexec(2, sys.executable, program), program.parent, MODE="checkpoint", AT="2", DIR="ckpt")
    assert proc.returncode == 0, describe(proc)
    return program.parent / "ckpt0"


def test_inspect_directory(saved_dir: Path) -> None:
    proc = run([sys.executable, "-m", "pyteleport", "inspect", "ckpt0"], saved_dir.parent)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    version = "%d.%d" % sys.version_info[:2]
    assert re.fullmatch(rf"MPI checkpoint: ckpt0 \(2 ranks, Python {version}, pyteleport \S+, id [0-9a-f]{{16}}\)",
                        lines[0]), lines
    for rank in (0, 1):
        name = f"rank-{rank}.a.pyteleport"
        size = (saved_dir / name).stat().st_size
        assert re.fullmatch(rf"  {name}: {size:,} bytes, checksum [0-9a-f]{{16}}", lines[1 + rank])
    assert lines[3].startswith("payload:     ckpt0/rank-0.a.pyteleport")
    source = PROGRAM.splitlines()
    call = next(i for i, line in enumerate(source, 1) if "pyteleport.mpi.checkpoint(" in line)
    top = source.index("result = run(6)") + 1
    prog = saved_dir.parent / "prog.py"
    at = lines.index("frames (outermost first; sizes are bytes in this payload):")
    wheres = [line for line in lines[at + 1:] if line.startswith("  /")]
    assert wheres[:2] == [f"  {prog}:{top}, in <module>", f"  {prog}:{call}, in run"], lines
    # the same for tools, with the manifest
    proc = run([sys.executable, "-m", "pyteleport", "inspect", "--json", "ckpt0"], saved_dir.parent)
    assert proc.returncode == 0, describe(proc)
    facts = json.loads(proc.stdout)
    assert facts["mpi_checkpoint"]["ranks"] == 2 and len(facts["mpi_checkpoint"]["files"]) == 2, facts
    assert [f["where"] for f in facts["rank0"]["frames"]] == [w.strip() for w in wheres[:2]], facts


def _refused(cwd: Path, cmd: List[str], message: str) -> None:
    proc = run(cmd, cwd)
    assert proc.returncode == 2, describe(proc)
    assert proc.stdout == "", describe(proc)        # nothing of the program ran
    assert proc.stderr.splitlines() == [f"pyteleport: {message}"], describe(proc)


def test_resume_refuses_another_size(saved_dir: Path) -> None:
    cwd = saved_dir.parent
    hint = "run `mpirun -n 2 pyteleport resume ckpt0`"
    _refused(cwd, mpiexec(3, sys.executable, "-m", "pyteleport", "resume", "ckpt0"),
             f"ckpt0 holds 2 ranks; this launch has 3: {hint}")
    _refused(cwd, [sys.executable, "-m", "pyteleport", "resume", "ckpt0"],
             f"ckpt0 holds 2 ranks; this launch has 1: {hint}")


def test_resume_refuses_incomplete_mixed_corrupted(saved_dir: Path, program: Path) -> None:
    cwd = saved_dir.parent
    resume = mpiexec(2, sys.executable, "-m", "pyteleport", "resume", "ckpt0")
    # another checkpoint of the same program, taken at another step
    other = run(mpiexec(2, sys.executable, program), cwd, MODE="checkpoint", AT="3", DIR="other")
    assert other.returncode == 0, describe(other)
    rank1 = next(saved_dir.glob("rank-1.*.pyteleport"))
    name = rank1.name
    original = rank1.read_bytes()

    next((cwd / "other0").glob("rank-1.*.pyteleport")).replace(rank1)
    _refused(cwd, resume, f"ckpt0: {name} is not the file this checkpoint wrote (size or "
             "checksum differs from the MANIFEST: files mixed from two checkpoints, or changed since)")

    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF          # the trailer (and the manifest) still agree
    rank1.write_bytes(bytes(damaged))
    _refused(cwd, resume, f"ckpt0/{name}: the payload's signature does not match its content "
             "(corrupted, or changed by someone without your key): refusing to run it")

    rank1.unlink()
    _refused(cwd, resume, f"ckpt0 is incomplete: {name} is missing")

    rank1.write_bytes(original)
    manifest = saved_dir / "MANIFEST"
    text = manifest.read_text()
    manifest.write_text(text.replace("python %d.%d" % sys.version_info[:2], "python 3.8"))
    _refused(cwd, resume, "ckpt0 was written by Python 3.8; this is Python %d.%d: resume it with "
             "Python 3.8" % sys.version_info[:2])

    manifest.unlink()
    _refused(cwd, resume, f"ckpt0 is not a complete MPI checkpoint: it holds {name.replace('-1.', '-0.')}, "
             f"{name} but no MANIFEST: the checkpoint was not finished (interrupted while writing?)")
    _refused(cwd, resume[:3] + [sys.executable, "-m", "pyteleport", "resume", "."],
             ". is not a complete MPI checkpoint: it holds no pyteleport checkpoint")

    # put back together, it resumes
    manifest.write_text(text)
    proc = run(resume, cwd)
    assert proc.returncode == 0 and "result" in proc.stdout, describe(proc)


REFUSED = """\
import os, sys
from mpi4py import MPI
import pyteleport, pyteleport.mpi
comm = MPI.COMM_WORLD
rank = comm.Get_rank()


def say(*args):
    os.write(1, (" ".join(map(str, args)) + "\\n").encode())   # one write per line


def work(kind):
    plain = comm.Dup() if kind == "comm" else None
    req = comm.irecv(source=0, tag=7) if kind == "request" and rank == 1 else None
    twin = pyteleport.mpi.dup(comm) if kind == "single" else None
    try:
        (pyteleport.checkpoint if kind == "single" else pyteleport.mpi.checkpoint)("ckpt")
    except pyteleport.TeleportError as e:
        say(rank, "ERROR", e)
    if req is not None:
        say(rank, "got", req.wait())
    elif kind == "request":
        comm.send("late", dest=1, tag=7)
    say(rank, "carried on", sorted(os.listdir("ckpt")) if os.path.isdir("ckpt") else os.path.exists("ckpt"))


work(sys.argv[1])
"""


@pytest.mark.parametrize("kind", ["comm", "request", "single"])
def test_checkpoint_refuses_unknown_communicator_and_pending_request(tmp_path: Path, kind: str) -> None:
    """single: a communicator of pyteleport.mpi in a one-process checkpoint (pyteleport.checkpoint)."""
    (tmp_path / "prog.py").write_text(REFUSED)
    proc = run(mpiexec(2, sys.executable, tmp_path / "prog.py", kind), tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = sorted(proc.stdout.splitlines())
    line = next(i for i, text in enumerate(REFUSED.splitlines(), 1) if "checkpoint)(" in text)
    where = f"{tmp_path / 'prog.py'}:{line}, in work"
    if kind == "comm":
        reason = (f"{where}: local 'plain': MPI communicator (Intracomm of size 2) cannot be moved: "
                  "make it with pyteleport.mpi.dup(), split() or create() (from COMM_WORLD, COMM_SELF or "
                  "one of those) so that it is re-created in the new launch, or Free() it before the call")
        errors = [f"0 ERROR {reason}", f"1 ERROR {reason}"]
    elif kind == "request":
        reason = (f"{where}: local 'req': a pending MPI request cannot be moved: complete it (Wait()) "
                  "or cancel it before the call")
        errors = [f"0 ERROR pyteleport.mpi.checkpoint: rank 1 failed: {reason}", f"1 ERROR {reason}"]
    else:
        reason = (f"{where}: local 'twin': MPI communicator (Intracomm of size 2) is re-created only when "
                  "every rank moves: use pyteleport.mpi.checkpoint() or pyteleport.mpi.teleport(), or "
                  "Free() it before the call")
        errors = [f"0 ERROR {reason}", f"1 ERROR {reason}"]
    # every rank raised, nothing was written, the program went on (the request completes)
    want = ["0 carried on False", *errors[:1], "1 carried on False", *errors[1:]]
    if kind == "request":
        want.insert(2, "1 got late")
    assert lines == sorted(want), describe(proc)


@pytest.mark.parametrize("mode, n, at", [("teleport", 2, "2"), ("teleport", 2, "1,3"), ("slurm", 2, "2")])
def test_teleport_matches_reference(program: Path, mode: str, n: int, at: str, request) -> None:
    """mode slurm: the job moves from mpiexec into a Slurm job, its ranks started by srun."""
    if mode == "slurm":
        request.getfixturevalue("slurm_cluster")
    want = reference(program, n)
    stage = program.parent / "stage"
    proc = run(mpiexec(n, sys.executable, program), program.parent, MODE=mode, AT=at, STAGE=str(stage))
    assert proc.returncode == 0, describe(proc)
    got = by_rank(proc.stdout)
    moves = len(at.split(","))
    for rank, lines in want.items():
        assert texts(got[rank]) == texts(lines), describe(proc)
        # one process per stretch between moves, a new one after each move
        pids = [pid for pid, _ in got[rank]]
        changes = [i for i in range(1, len(pids)) if pids[i] != pids[i - 1]]
        assert len(changes) == moves and len(set(pids)) == moves + 1, describe(proc)
        steps = [int(t.split()[1]) for _, t in got[rank] if t.startswith("step")]
        assert [steps[i] for i in changes] == [int(s) + 1 for s in at.split(",")], describe(proc)
    if mode == "slurm":
        # the ranks ran in the job, whose output the source forwarded; nothing is left in the stage
        assert len(list(program.parent.glob("job-*.out"))) == 1
        assert not stage.exists() or os.listdir(stage) == [], os.listdir(stage)
    else:
        assert proc.stderr == "", describe(proc)
    assert list(program.parent.glob("pyteleport-mpi-*")) == []


MOVE_FAILS = """\
import os, sys
from mpi4py import MPI
import pyteleport, pyteleport.mpi
comm = MPI.COMM_WORLD
rank = comm.Get_rank()


def say(*args):
    os.write(1, (" ".join(map(str, [rank, os.getpid(), *args])) + "\\n").encode())


import vanishing
twin = pyteleport.mpi.dup(comm)
if rank == 1:
    vanishing.VALUE += 1          # module state travels; the ranks import the module again
comm.Barrier()
if rank == 0:
    os.rename("vanishing.py", "vanishing.away")
plain = comm.Dup()                # not made through pyteleport.mpi: cannot be re-created
try:
    pyteleport.mpi.teleport()
except pyteleport.TeleportError as e:
    say("ERROR", e)
plain.Free()                      # now COMM_NULL, which moves
for options in OPTIONS:
    try:
        pyteleport.mpi.teleport(**options)
    except pyteleport.TeleportError as e:
        say("ERROR", e)
    say("carried on", vanishing.VALUE, twin.allreduce(1))
comm.Barrier()
if rank == 0:
    os.rename("vanishing.away", "vanishing.py")
comm.Barrier()
pyteleport.mpi.teleport()
say("moved", vanishing.VALUE, twin.allreduce(1))
"""


def test_teleport_failures_leave_every_rank_running(tmp_path: Path) -> None:
    (tmp_path / "vanishing.py").write_text("VALUE = 41\n")
    options = [{"backend": "mpirun", "n": 3}, {"backend": "local"}, {"backend": "mpirun"}]
    (tmp_path / "prog.py").write_text(MOVE_FAILS.replace("OPTIONS", repr(options)))
    proc = run(mpiexec(2, sys.executable, tmp_path / "prog.py"), tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines: Dict[int, List[tuple]] = {}
    for line in proc.stdout.splitlines():
        rank, pid, text = line.split(" ", 2)
        lines.setdefault(int(rank), []).append((int(pid), text))
    n_error = ("pyteleport.mpi.teleport: n=3, but this job has 2 ranks: an MPI job moves to as many "
               "ranks (rank i resumes as rank i); leave n out")
    local_error = "backend 'local' cannot start the ranks of an MPI job: use backend='mpirun' or 'slurm'"
    plain_error = ("__main__ global 'plain': MPI communicator (Intracomm of size 2) cannot be moved: make it "
                   "with pyteleport.mpi.dup(), split() or create() (from COMM_WORLD, COMM_SELF or one of "
                   "those) so that it is re-created in the new launch, or Free() it before the call")
    for rank in (0, 1):
        value = 41 + rank
        got = lines[rank]
        assert got[0][1] == f"ERROR {plain_error}", describe(proc)
        got = got[1:]
        texts_ = [t for _, t in got]
        assert texts_[:4] == [f"ERROR {n_error}", f"carried on {value} 2",
                              f"ERROR {local_error}", f"carried on {value} 2"], describe(proc)
        # the new ranks could not import the module: every old rank raised, and went on
        assert texts_[4].startswith("ERROR mpirun backend (") and "could not resume the program" in texts_[4] \
            and "vanishing" in texts_[4], describe(proc)
        assert texts_[5:] == [f"carried on {value} 2", f"moved {value} 2"], describe(proc)
        assert len({pid for pid, _ in got[:6]}) == 1 and got[6][0] != got[0][0], describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    assert list(tmp_path.glob("pyteleport-mpi-*")) == []


SLURM_FANOUT = """\
import os, sys
import pyteleport

grid = [i * i for i in range(10)]
print("login", os.getpid(), flush=True)
pyteleport.teleport(backend="slurm", ntasks=NTASKS, mpi=True, wait=True, stage_dir="stage",
                    output="job-%j.out", error="job-%j.err")
from mpi4py import MPI
comm = MPI.COMM_WORLD
rank = comm.Get_rank()
part = sum(grid[rank::comm.Get_size()])
line = f"rank {rank} task {pyteleport.task_index()} of {comm.Get_size()} pid {os.getpid()} " \\
       f"job {os.environ['SLURM_JOB_ID']} part {part} total {comm.allreduce(part)} " \\
       f"stale {os.environ.get('PMI_STALE')}\\n"
os.write(1, line.encode())
"""


@pytest.mark.usefixtures("slurm_cluster")
@pytest.mark.parametrize("launcher", [None, [LAUNCHER, "-n", "2"]], ids=["srun", "mpiexec"])
def test_slurm_fanout_into_mpi_ranks(tmp_path: Path, launcher) -> None:
    options = "" if launcher is None else f", mpi_launcher={launcher!r}"
    (tmp_path / "prog.py").write_text(SLURM_FANOUT.replace("NTASKS", "2").replace(", wait=True", ", wait=True" + options))
    # a variable of an MPI launch the source would be part of: not the ranks'
    proc = run([sys.executable, tmp_path / "prog.py"], tmp_path, PMI_STALE="from an old launch")
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    login = lines.pop(0).split()
    assert login[0] == "login", describe(proc)
    got = sorted(line.split() for line in lines)
    assert [(w[1], w[3], w[5]) for w in got] == [("0", "0", "2"), ("1", "1", "2")], describe(proc)
    assert len({w[7] for w in got} | {login[1]}) == 3, describe(proc)     # new processes
    assert len({w[9] for w in got}) == 1, describe(proc)                  # one job
    want = [sum(i * i for i in range(r, 10, 2)) for r in (0, 1)]
    assert [int(w[11]) for w in got] == want and {int(w[13]) for w in got} == {sum(want)}
    assert [w[14:] for w in got] == [["stale", "None"]] * 2, describe(proc)
    assert not (tmp_path / "stage").exists() or os.listdir(tmp_path / "stage") == []


PROTECTED = """\\
import os, sys, time
import pyteleport, pyteleport.mpi

MOVE = os.environ.get("MOVE")               # into a Slurm job of 2 ranks surviving time limits
OPTIONS = dict(requeue=True, grace=60, wait=True, job_name=os.environ.get("JOB_NAME"),
               stage_dir="stage", output="job-%j.out", error="job-%j.err")
if MOVE == "fanout":                        # from one process
    pyteleport.teleport(backend="slurm", ntasks=2, mpi=True, **OPTIONS)
from mpi4py import MPI
comm = MPI.COMM_WORLD
rank = comm.Get_rank()
if MOVE == "ranks":                         # a running MPI job moves
    pyteleport.mpi.teleport(backend="slurm", **OPTIONS)
total, resumed = 0, 0
for i in range(40):
    total += comm.allreduce(i * (rank + 1))
    if rank == 0:
        print("step", i, total, flush=True)
        if i == 5:
            print("ready", flush=True)
    # busy, so that the signal lands mid-loop; slowly until the job was
    # requeued, so that the test has time to send it
    slow = "SLURM_JOB_ID" in os.environ and "SLURM_RESTART_COUNT" not in os.environ
    t = time.time()
    while time.time() - t < (0.25 if slow else 0.01):
        pass
    resumed += pyteleport.mpi.safe_point()
if rank == 0:
    print("done", total, flush=True)
# one write per line: the ranks share stderr, and print() may write a line in parts
os.write(2, f"rank {rank} resumed {resumed} restarts {os.environ.get('SLURM_RESTART_COUNT', '0')}\\n".encode())
"""


@pytest.mark.usefixtures("slurm_cluster")
@pytest.mark.parametrize("move", ["fanout", "ranks"])
def test_mpi_job_survives_time_limit_signal(tmp_path: Path, move: str) -> None:
    """A job moved into Slurm with requeue=True (from one process, or as a
    running MPI job): the warning signal reaches both ranks (srun forwards
    it); at the next safe_point() every rank is checkpointed, the job
    requeued, and the next allocation resumes both ranks: rank 0's output is
    an uninterrupted run's."""
    import threading
    import time

    from slurmctl import sh, wait_job_done
    (tmp_path / "prog.py").write_text(PROTECTED)
    reference = run(mpiexec(2, sys.executable, tmp_path / "prog.py"), tmp_path)
    assert reference.returncode == 0, describe(reference)
    assert sorted(reference.stderr.splitlines()) == [f"rank {r} resumed 0 restarts 0" for r in (0, 1)]
    name = f"ptl-mpi-limit-{os.getpid()}-{time.monotonic_ns()}"
    cmd = [sys.executable, str(tmp_path / "prog.py")]
    proc = subprocess.Popen(cmd if move == "fanout" else mpiexec(2, *cmd), cwd=tmp_path, text=True,
                            env=mpi_env(MOVE=move, JOB_NAME=name), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    watchdog = threading.Timer(TIMEOUT, proc.kill)
    watchdog.start()
    try:
        # the job is running its loop: send the warning as Slurm would at the limit
        seen = [*itertools.takewhile(lambda line: line != "ready\n", proc.stdout), "ready\n"]
        ids = sh("squeue", "-h", "-o", "%i", "--name", name).split()
        assert len(ids) == 1, ids
        sh("scancel", "--batch", "--signal=USR2", ids[0])
        rest = proc.stdout.read()
        err = proc.stderr.read()
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
    fields = wait_job_done(ids[0])
    what = ("".join(seen) + rest, err, fields, [(p.name, p.read_text()) for p in tmp_path.glob("job-*")],
            [str(p) for p in (tmp_path / "stage").rglob("*")])
    assert proc.returncode == 0, what
    assert "".join(seen) + rest == reference.stdout, what
    ranks = sorted(line for line in err.splitlines() if line.startswith("rank "))
    assert ranks == [f"rank {r} resumed 1 restarts 1" for r in (0, 1)], what
    assert fields["Restarts"] == "1", what
    assert not (tmp_path / "stage").exists() or os.listdir(tmp_path / "stage") == [], what


IN_SLURM = """\\
import os, sys
from mpi4py import MPI
import pyteleport.mpi

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
u = [rank] * 3
for step in range(4):
    u = [x + comm.allreduce(x) for x in u]
    where = f"{os.environ.get('SLURM_JOB_PARTITION', '-')} {os.environ.get('SLURM_JOB_ID', '-')} {os.getpid()}"
    os.write(1, f"rank {rank} step {step} u {u} | {where}\\n".encode())
    if step == 1 and os.environ.get("MOVE") == "1":
        pyteleport.mpi.teleport(backend="slurm", partition="gpu", wait=True, stage_dir="stage",
                                output="new-%j.out", error="new-%j.err")
"""


@pytest.mark.usefixtures("slurm_cluster")
def test_mpi_job_in_slurm_moves_to_another_partition(tmp_path: Path) -> None:
    """The issue's example: a running MPI job of a Slurm batch job (ranks
    started by srun) moves into a new job on another partition."""
    from slurmctl import wait_job_done
    (tmp_path / "prog.py").write_text(IN_SLURM)
    reference = run(mpiexec(2, sys.executable, tmp_path / "prog.py"), tmp_path)
    assert reference.returncode == 0, describe(reference)
    (tmp_path / "job.sh").write_text(f"#!/bin/sh\nexec srun --mpi=pmi2 {sys.executable} prog.py\n")
    env = mpi_env(MOVE="1")
    job = subprocess.run(["sbatch", "--parsable", "-n", "2", "-p", "debug", "-o", "old-%j.out",
                          "-e", "old-%j.err", "job.sh"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, check=True).stdout.strip()
    fields = wait_job_done(job, timeout=TIMEOUT)
    out = (tmp_path / f"old-{job}.out").read_text()
    assert fields["JobState"] == "COMPLETED", (fields, out, (tmp_path / f"old-{job}.err").read_text())
    split = lambda text: sorted(line.split(" | ") for line in text.splitlines())   # noqa: E731
    got, want = split(out), split(reference.stdout)
    assert [g[0] for g in got] == [w[0] for w in want], out
    for rank in (0, 1):
        # (partition, job, pid) of steps 0-1 (before the move) and 2-3 (after)
        places = [tuple(g[1].split()) for g in got if g[0].startswith(f"rank {rank} ")]
        before, after = set(places[:2]), set(places[2:])
        assert len(before) == 1 and len(after) == 1, out
        (old,), (new,) = before, after
        assert old[:2] == ("debug", job) and new[0] == "gpu" and new[1] != job and new[2] != old[2], out
    assert not (tmp_path / "stage").exists() or os.listdir(tmp_path / "stage") == []


@pytest.mark.usefixtures("slurm_cluster")
def test_slurm_mpi_job_without_waiting(tmp_path: Path) -> None:
    """wait=False: the source exits once submitted; the ranks run on, their
    output in the job's file, and rank 0 removes the stage at the end."""
    from slurmctl import wait_job_done
    (tmp_path / "prog.py").write_text(SLURM_FANOUT.replace("NTASKS", "2").replace("wait=True", "wait=False"))
    proc = run([sys.executable, tmp_path / "prog.py"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    job = re.fullmatch(r"pyteleport: submitted slurm job (\d+); its output is in \S+ and \S+; "
                       r"pyteleport is not following it \(wait=False\)\n", proc.stderr)
    assert job and proc.stdout.startswith("login "), describe(proc)
    fields = wait_job_done(job.group(1), timeout=TIMEOUT)
    out = (tmp_path / f"job-{job.group(1)}.out").read_text()
    assert fields["JobState"] == "COMPLETED", (fields, out)
    assert sorted(line.split()[:6] for line in out.splitlines()) == \
        [["rank", str(r), "task", str(r), "of", "2"] for r in (0, 1)], out
    assert not (tmp_path / "stage").exists()


REPEAT = """\
import os, resource, signal, sys
import numpy as np
from mpi4py import MPI
import pyteleport, pyteleport.mpi

comm = MPI.COMM_WORLD
rank = comm.Get_rank()


def say(*args):
    sys.stdout.flush()
    os.write(1, (" ".join([f"rank={rank} pid={os.getpid()}", *map(str, args)]) + "\\n").encode())


total = 0
for step in range(5):
    # per rank, 512 KiB of state at step 1, 8 MiB at step 2, 8 KiB at step 3
    data = np.full({1: 1 << 16, 2: 1 << 20}.get(step, 1 << 10), step + rank, dtype=np.int64)
    total += int(data.sum())
    if str(step) in os.environ["AT"].split(","):
        if step == 2 and rank == 1 and os.environ.get("LIMIT"):
            # a real write failure on one rank: files above 1 MiB are refused
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
        try:
            resumed = pyteleport.mpi.checkpoint("ck")
        except pyteleport.TeleportError as e:
            say("step", step, "failed", e)
        else:
            say("step", step, "resumed" if resumed else "saved", total)
say("end", total)
"""

AGAIN = {  # case: (AT, LIMIT, step of the checkpoint left, slots of files left)
    "second fails on one rank": ("1,2", "1", 1, "a"),
    "second succeeds": ("1,2", "", 2, "ab"),
    # the third is written over the first's files, in place, and is smaller
    "third succeeds": ("1,2,3", "", 3, "ab"),
}


@pytest.mark.parametrize("case", list(AGAIN))
def test_checkpointing_again_into_a_directory(tmp_path: Path, case: str) -> None:
    """A new checkpoint into the same directory replaces the previous one
    only once it is complete: if it fails on one rank (a real write error),
    every rank is told, the job carries on, and the directory still resumes
    the previous one; nothing of the failed attempt stays behind.  Resuming
    the directory goes on exactly as the first run did from the checkpoint
    it holds."""
    at, limit, left, slots = AGAIN[case]
    (tmp_path / "repeat.py").write_text(REPEAT)
    first = run(mpiexec(2, sys.executable, "repeat.py"), tmp_path, AT=at, LIMIT=limit)
    assert first.returncode == 0, describe(first)
    lines = by_rank(first.stdout)
    for rank, got in lines.items():
        want = [f"step {step} saved" for step in at.split(",")] + ["end"]
        if limit:
            want[1] = ("step 2 failed pyteleport.mpi.checkpoint: rank 1 cannot write "
                       f"{tmp_path}/ck/rank-1.b.pyteleport: File too large")
        assert [t.rsplit(" ", 1)[0] if "saved" in t or "end" in t else t for t in texts(got)] == want, \
            describe(first)
    # the MANIFEST names the slot of the checkpoint the directory holds; the
    # other slot is where the next one will be written
    slot = "ab"[(len(at.split(",")) - 1 if not limit else 0) % 2]
    assert (tmp_path / "ck" / "MANIFEST").read_text().splitlines()[2] == f"slot {slot}"
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == (
        sorted(["MANIFEST"] + [f"rank-{i}.{s}.pyteleport" for s in slots for i in range(2)]))

    if case == "third succeeds":
        # written over the first checkpoint's 512 KiB files: cut to its own size
        assert all((tmp_path / "ck" / f"rank-{i}.a.pyteleport").stat().st_size < 64 << 10 for i in range(2))
    again = run(mpiexec(2, sys.executable, "-m", "pyteleport", "resume", "ck"), tmp_path)
    assert again.returncode == 0, describe(again)
    resumed = by_rank(again.stdout)
    for rank, got in lines.items():
        start = next(i for i, t in enumerate(texts(got)) if t.startswith(f"step {left} saved"))
        want = [t.replace("saved", "resumed", 1) if i == start else t
                for i, t in enumerate(texts(got)) if i >= start]
        assert texts(resumed[rank]) == want, describe(again)
        assert {pid for pid, _ in resumed[rank]}.isdisjoint(pid for pid, _ in got)


def test_a_bad_sync_setting_is_refused_on_every_rank(tmp_path: Path) -> None:
    (tmp_path / "repeat.py").write_text(REPEAT)
    proc = run(mpiexec(2, sys.executable, "repeat.py"), tmp_path, AT="1,2", PYTELEPORT_SYNC="sometimes")
    assert proc.returncode == 0, describe(proc)
    refusal = ("failed pyteleport.mpi.checkpoint: PYTELEPORT_SYNC must be true or false (1/0), "
               "not 'sometimes'")
    for rank, got in by_rank(proc.stdout).items():
        assert texts(got)[:2] == [f"step 1 {refusal}", f"step 2 {refusal}"], describe(proc)
        assert texts(got)[2].startswith("end"), describe(proc)
    assert not (tmp_path / "ck").exists()


LOST = """\\
import os, sys, time
from mpi4py import MPI
import pyteleport.mpi
from pyteleport.backends.slurm._follow import Follower

Follower.UNAVAILABLE_FOR = 1.0          # the source gives up on a silent Slurm soon
rank = MPI.COMM_WORLD.Get_rank()
pyteleport.mpi.teleport(backend="slurm", wait=True, stage_dir="stage", job_name=os.environ["JOB_NAME"],
                        output="job-%j.out", error="job-%j.err")
if rank == 0:
    print("ready", flush=True)
while True:                             # until cancelled
    time.sleep(0.05)
"""


@pytest.mark.usefixtures("slurm_cluster")
def test_mpi_source_that_loses_the_job_ends_every_rank(tmp_path: Path) -> None:
    """Rank 0 of a moved MPI job stops following the job (Slurm does not
    answer any more): every rank of the source ends with exit code 1 and
    says why; none goes back into the program, none is left waiting."""
    import time

    from slurmctl import sh
    from test_slurm_restart import flaky_scontrol
    (tmp_path / "prog.py").write_text(LOST)
    bindir, down, failed = flaky_scontrol(tmp_path)
    name = f"ptl-mpi-lost-{os.getpid()}-{time.monotonic_ns()}"
    env = mpi_env(JOB_NAME=name, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen(mpiexec(2, sys.executable, tmp_path / "prog.py"), cwd=tmp_path, text=True,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        first = proc.stdout.readline()
        down.touch()                         # from now on the source's scontrol fails
        out, err = proc.communicate(timeout=TIMEOUT)
        out = first + out
    finally:
        if proc.poll() is None:
            proc.kill()
        for job in sh("squeue", "-h", "-o", "%i", "--name", name).split():
            sh("scancel", job)
    assert proc.returncode == 1, (out, err)
    assert out == "ready\n", (out, err)
    assert "lost track of the moved program (it may still run there): slurm backend: scontrol show " \
           "job" in err and "Socket timed out" in err, err
    assert failed.exists()
