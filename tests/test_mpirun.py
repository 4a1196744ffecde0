"""The ``mpirun`` backend against a real MPI (mpi4py + the launcher next to
this interpreter or on PATH; ``.ci/install-mpi.sh`` installs them).

Differential: a program builds data serially, moves into N ranks half-way
through a loop, and each rank computes its share with mpi4py; the same
program launched directly with ``mpiexec -n N`` (the move disabled) is the
reference.  Each rank's lines must be identical in both runs, the lines after
the move must come from N new processes, and the reduction must be right.
Failures (no launcher, a module missing on the ranks, a timeout) must raise
TeleportError in the source, leave nothing behind and let the program go on.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from mpilaunch import LAUNCHER, describe, run
from progs import processes

TIMEOUT = 120

PRELUDE = """\
import os, sys
import pyteleport

START = int(os.environ.get("SOURCE_PID", os.getpid()))


def say(*args):
    rank = pyteleport.task_index()     # the reference run: the launcher's rank
    where = "SAME" if os.getpid() == START else "MOVED"
    line = " ".join([f"rank={rank} pid={os.getpid()} {where}", *map(str, args)]) + "\\n"
    sys.stdout.flush()
    os.write(1, line.encode())        # one write: the ranks' lines do not interleave
"""

FANOUT = PRELUDE + """
import numpy as np

MOVE = os.environ.get("FANOUT_MOVE", "1") == "1"
N = int(os.environ["FANOUT_N"])


def build(size):
    grid = np.arange(size * size, dtype=np.float64).reshape(size, size)
    history = []
    scale = lambda a: a * 0.5            # a closure travels with the frame
    for step in range(4):
        grid = scale(grid) + step
        history.append(round(float(grid.sum()), 6))
        if step == 1:
            say("serial part done, history", history)
            if MOVE:
                pyteleport.teleport(backend="mpirun", n=N, env={"FANOUT_EXTRA": "yes"})
            say("resumed in the loop at step", step, "extra", os.environ.get("FANOUT_EXTRA", "yes"))
    return grid, history


grid, history = build(12)
from mpi4py import MPI
comm = MPI.COMM_WORLD
rank = comm.Get_rank()
assert pyteleport.task_index() == rank     # the fan-out's, or (reference) the launcher's
mine = grid[rank::comm.Get_size()]
part = float((mine ** 2).sum())
say("history", history, "rows", mine.shape[0], "partial", part)
total = comm.reduce(part, op=MPI.SUM, root=0)
if rank == 0:
    say("size", comm.Get_size(), "total", total)
"""

LINE = re.compile(r"^rank=(\S+) pid=(\d+) (SAME|MOVED) (.*)$")


def _run(cmd: List[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    return run(cmd, cwd, TIMEOUT, **extra)


def _by_rank(stdout: str) -> Dict[str, List[tuple]]:
    """Lines per rank tag, in order: (pid, SAME/MOVED, text)."""
    out: Dict[str, List[tuple]] = {}
    for line in stdout.splitlines():
        m = LINE.match(line)
        assert m, f"unexpected output line {line!r}"
        out.setdefault(m.group(1), []).append((int(m.group(2)), m.group(3), m.group(4)))
    return out


def _leftovers(directory: Path) -> List[str]:
    return sorted(p.name for p in directory.glob("pyteleport-mpi-*"))


@pytest.mark.parametrize("n", [2, 3])
def test_fanout_matches_direct_mpi_run(tmp_path: Path, n: int) -> None:
    import numpy as np
    prog = tmp_path / "fanout.py"
    prog.write_text(FANOUT)
    moved = _run([sys.executable, str(prog)], tmp_path, FANOUT_N=str(n))
    assert moved.returncode == 0, describe(moved)
    reference = _run([LAUNCHER, "-n", str(n), sys.executable, str(prog)], tmp_path,
                     FANOUT_N=str(n), FANOUT_MOVE="0")
    assert reference.returncode == 0, describe(reference)

    got, want = _by_rank(moved.stdout), _by_rank(reference.stdout)
    # before the move: one process (task_index None), the same serial lines as each reference rank
    before = got.pop("None")
    assert [t for _, _, t in before] == [t for _, _, t in want["0"][:1]], describe(moved)
    source_pid = before[0][0]
    assert sorted(got) == sorted(want) == [str(r) for r in range(n)], describe(moved)
    pids = set()
    for rank in got:
        # identical lines per rank after the move, all from a new process per rank
        assert [t for _, _, t in got[rank]] == [t for _, _, t in want[rank][1:]], describe(moved)
        rank_pids = {pid for pid, _, _ in got[rank]}
        assert len(rank_pids) == 1 and source_pid not in rank_pids, describe(moved)
        assert {w for _, w, _ in got[rank]} == {"MOVED"}, describe(moved)
        pids |= rank_pids
    assert len(pids) == n
    # the reduction, against numpy in this process
    grid = np.arange(144, dtype=np.float64).reshape(12, 12)
    for step in range(4):
        grid = grid * 0.5 + step
    expected = sum(float((grid[r::n] ** 2).sum()) for r in range(n))
    total = float(got["0"][-1][2].split("total ")[1])
    assert total == pytest.approx(expected, rel=1e-12)
    assert _leftovers(tmp_path) == []


CARRY_ON = PRELUDE + """
try:
    pyteleport.teleport(backend="mpirun", n=2, {options})
except pyteleport.TeleportError as e:
    say("ERROR", e)
say("carried on")
"""


def test_launcher_missing(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(CARRY_ON.replace("{options}", "mpirun='/nonexistent/mpirun'"))
    proc = _run([sys.executable, str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and "SAME ERROR" in lines[0], describe(proc)
    assert "'/nonexistent/mpirun' not found" in lines[0], describe(proc)
    assert lines[1].endswith("SAME carried on"), describe(proc)
    assert proc.stderr == ""


def test_bad_option(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(CARRY_ON.replace("{options}", "").replace("n=2", "n=0"))
    proc = _run([sys.executable, str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert "SAME ERROR mpirun backend" in proc.stdout and "SAME carried on" in proc.stdout, describe(proc)


def test_module_missing_on_ranks_then_retry(tmp_path: Path) -> None:
    (tmp_path / "vanishing.py").write_text("VALUE = 41\n")
    prog = tmp_path / "prog.py"
    prog.write_text(PRELUDE + """
import vanishing
vanishing.VALUE += 1                          # module state: the ranks re-import it
os.rename("vanishing.py", "vanishing.away")
try:
    pyteleport.teleport(backend="mpirun", n=2)
except pyteleport.TeleportError as e:
    say("ERROR", e)
say("carried on", vanishing.VALUE)
os.rename("vanishing.away", "vanishing.py")
pyteleport.teleport(backend="mpirun", n=2)
say("moved", vanishing.VALUE)
""")
    proc = _run([sys.executable, str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = _by_rank(proc.stdout)
    before = lines.pop("None")
    assert before[0][1] == "SAME" and before[0][2].startswith("ERROR mpirun backend"), describe(proc)
    assert "could not resume the program" in before[0][2] and "vanishing" in before[0][2], describe(proc)
    assert [t for _, _, t in before[1:]] == ["carried on 42"], describe(proc)
    assert sorted(lines) == ["0", "1"]
    for rank, got in lines.items():
        assert [(w, t) for _, w, t in got] == [("MOVED", "moved 42")], describe(proc)
    # the failed ranks ran nothing and said nothing; nothing is left behind
    assert "Traceback" not in proc.stderr, describe(proc)
    assert _leftovers(tmp_path) == []


def test_handoff_timeout_setup_and_exit_code(tmp_path: Path) -> None:
    prog = tmp_path / "prog.py"
    prog.write_text(PRELUDE + """
try:
    pyteleport.teleport(backend="mpirun", n=2, setup="sleep 31.5", handoff_timeout=1)
except pyteleport.TeleportError as e:
    say("ERROR", e)
pyteleport.teleport(backend="mpirun", n=2, setup="export FROM_SETUP=ok")
say("from setup", os.environ.get("FROM_SETUP"))
sys.exit(3)
""")
    proc = _run([sys.executable, str(prog)], tmp_path)
    assert proc.returncode == 3, describe(proc)
    lines = _by_rank(proc.stdout)
    before = lines.pop("None")
    assert len(before) == 1 and "did not confirm the move within 1 s" in before[0][2], describe(proc)
    assert processes(["sleep", "31.5"]) == [], "the hung setup outlived the abandoned launch"
    assert sorted(lines) == ["0", "1"]
    for got in lines.values():
        assert [(w, t) for _, w, t in got] == [("MOVED", "from setup ok")], describe(proc)
    assert _leftovers(tmp_path) == []


def test_mpi_initialised_before_the_move(tmp_path: Path) -> None:
    """The source ran MPI as a singleton; the ranks' MPI is the new launch's."""
    prog = tmp_path / "prog.py"
    prog.write_text(PRELUDE + """
from mpi4py import MPI
say("source world", MPI.COMM_WORLD.Get_size())
pyteleport.teleport(backend="mpirun", n=2)
comm = MPI.COMM_WORLD
say("world", comm.Get_size(), "rank", comm.Get_rank(), "sum", comm.allreduce(comm.Get_rank() + 1))
""")
    proc = _run([sys.executable, str(prog)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = _by_rank(proc.stdout)
    assert [(w, t) for _, w, t in lines.pop("None")] == [("SAME", "source world 1")], describe(proc)
    assert {r: [(w, t) for _, w, t in got] for r, got in lines.items()} == {
        "0": [("MOVED", "world 2 rank 0 sum 3")], "1": [("MOVED", "world 2 rank 1 sum 3")]}, describe(proc)


def test_the_users_mpi_settings_reach_the_ranks(tmp_path: Path) -> None:
    """Variables that configure MPI (MPICH CVARs, hydra's, PMIx's and
    PRRTE's MCA parameters) are the user's, not the launch's: the ranks
    started by the backend see them; the variables of the launch the
    source is itself part of do not leak into the new one."""
    settings = {"MPIR_CVAR_ASYNC_PROGRESS": "0", "HYDRA_DEBUG": "0", "PMIX_MCA_pyteleport_test": "1",
                "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe"}
    prog = tmp_path / "prog.py"
    prog.write_text(PRELUDE + f"""
import os
names = {sorted(settings)!r}
pyteleport.teleport(backend="mpirun", n=2)
say("settings", [os.environ.get(name) for name in names], "stale", os.environ.get("PMI_STALE"))
""")
    proc = _run([sys.executable, str(prog)], tmp_path, **settings, PMI_STALE="from an old launch")
    assert proc.returncode == 0, describe(proc)
    want = [("MOVED", f"settings {[settings[k] for k in sorted(settings)]} stale None")]
    assert {r: [(w, t) for _, w, t in got] for r, got in _by_rank(proc.stdout).items()} == {
        "0": want, "1": want}, describe(proc)
