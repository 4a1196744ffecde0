"""The rank a launcher (mpirun, mpiexec, srun) gave this process, from the
variables it sets: what :func:`pyteleport.task_index` and the MPI rank
entry read."""
from __future__ import annotations

TYPE_CHECKING = False   # imported by every resumed rank: no typing (and re)
if TYPE_CHECKING:
    from typing import Mapping, Optional, Tuple

# (rank variable, size variable) of the launchers we know, in lookup order
RANK_VARIABLES = (
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),   # Open MPI
    ("PMIX_RANK", None),                                 # PMIx (Open MPI 5, srun --mpi=pmix)
    ("PMI_RANK", "PMI_SIZE"),                            # MPICH hydra, Intel MPI, MVAPICH
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"),      # MVAPICH2 mpirun_rsh
    ("SLURM_PROCID", "SLURM_NTASKS"),                    # srun
)


def rank_from_env(environ: Mapping[str, str]) -> Tuple[Optional[int], Optional[int]]:
    """``(rank, size)`` as the launcher set them; ``(None, None)`` if unknown
    (``size`` is None when the launcher does not say)."""
    for rank_var, size_var in RANK_VARIABLES:
        rank = environ.get(rank_var)
        if rank is not None and rank.isdigit():
            size = environ.get(size_var) if size_var else None
            return int(rank), int(size) if size and size.isdigit() else None
    return None, None


def launch_rank(environ: Mapping[str, str]) -> Optional[int]:
    """This process's rank in a launch of several, else None.  A Slurm batch
    script has SLURM_PROCID=0 too, so srun's is used only inside a job step
    of more than one task."""
    if environ.get("SLURM_PROCID") is not None and not _in_parallel_step(environ):
        environ = {k: v for k, v in environ.items() if k != "SLURM_PROCID"}
    return rank_from_env(environ)[0]


def _in_parallel_step(environ: Mapping[str, str]) -> bool:
    tasks = environ.get("SLURM_STEP_NUM_TASKS", "")
    return environ.get("SLURM_STEP_ID") is not None and tasks.isdigit() and int(tasks) > 1
