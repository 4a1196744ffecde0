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
MPI.COMM_WORLD.Barrier()
MPI.Finalize()
if rank == 1:
    time.sleep(1.5)         # still on its way out when rank 0 has ended
    os.write(1, b"rank 1 ended\\n")
end_process(0)
"""


def test_a_slower_rank_is_not_killed_when_another_has_ended(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(ENDING)
    proc = run(mpiexec(2, sys.executable, tmp_path / "prog.py"), tmp_path, timeout=60)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "rank 1 ended\n", describe(proc)
