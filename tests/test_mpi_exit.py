"""The old ranks of a moved MPI job end without their launcher taking them
for crashed ones.

MPICH closes its connection to the launcher in a C exit handler, after
``MPI_Finalize``; a rank ended by ``os._exit()`` skips it, and hydra's proxy
then kills every rank of the job still running with SIGKILL.  That was the
"EXIT CODE: 9" seen now and then at the end of a moved MPI job: whichever old
rank was a little slower on its way out was killed by the proxy.
"""
from __future__ import annotations

import sys
from pathlib import Path

from mpilaunch import describe, mpiexec, run

ENDING = """
import os, time
from mpi4py import MPI
from pyteleport._exit import end_process
rank = MPI.COMM_WORLD.Get_rank()
first = MPI.COMM_WORLD.bcast(os.getpid(), root=0)
MPI.Finalize()


def ended(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


if rank == 1:
    # still on its way out once rank 0 has ended (a zombie, or reaped)
    deadline = time.monotonic() + 30
    while not ended(first) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)         # the launcher's kill, if any, comes with rank 0's end
    os.write(1, b"rank 1 ended\\n" if ended(first) else b"rank 0 did not end\\n")
end_process(0)
"""


def test_a_slower_rank_is_not_killed_when_another_has_ended(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(ENDING)
    proc = run(mpiexec(2, sys.executable, tmp_path / "prog.py"), tmp_path, timeout=60)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "rank 1 ended\n", describe(proc)
