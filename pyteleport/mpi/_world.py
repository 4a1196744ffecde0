"""The MPI world of a program: its recorded communicators, rebuilt on resume.

Communicators made through :mod:`pyteleport.mpi` (``dup``, ``split``,
``create``) are recorded here, in creation order, with how each was made
(a *recipe*: plain tuples that a plain pickle carries in the payload's
context).  When an MPI program resumes, :func:`rebuild` replays the recipes
on the new world before any object of the program is rebuilt, so that the
program's references to them (see ``_pickling``) find the new ones.  Every
rank replays the same calls in the same order: they are collective.

This module runs in every resumed rank: standard library only, and mpi4py
is imported only when a program that used MPI is rebuilt.
"""
import os
import sys

# (communicator, recipe) in creation order; a recipe is one of
#   ("dup", parent)   ("split", parent, color, key)   ("create", parent, ranks)
# where parent is "world", "self", the index of an earlier recorded
# communicator, or None (a communicator pyteleport cannot re-create); ranks
# are the new group's members as ranks of the parent (None: empty group)
recorded = []
# True while pyteleport.mpi packs a rank (recorded communicators move only so)
collective = False

# environment variables a launcher sets for one launch only: never carried
# into another launch (a stale PMI_FD or PMIX_SERVER_URI breaks MPI_Init
# there).  As set by MPICH's hydra (PMI_*, HYDI_*, MPI_LOCAL*), Open MPI 4
# (OMPI_MCA_ess_/orte_/pmix*) and 5 (PRRTE, PMIx), MVAPICH.
LAUNCH_PREFIXES = ("PMI_", "PMIX_", "HYDI_", "MPI_LOCALRANKID", "MPI_LOCALNRANKS",
                   "OMPI_COMM_WORLD_", "OMPI_WORLD_", "OMPI_UNIVERSE_SIZE", "OMPI_FILE_LOCATION",
                   "OMPI_ARGV", "OMPI_COMMAND", "OMPI_NUM_APP_CTX", "OMPI_APP_CTX_",
                   "OMPI_FIRST_RANKS", "OMPI_MCA_PREFIXES", "OMPI_MCA_cpu_type",
                   "OMPI_MCA_initial_wdir", "OMPI_MCA_num_procs", "OMPI_MCA_ess_", "OMPI_MCA_orte_",
                   "OMPI_MCA_pmix", "PRTE_", "MV2_COMM_WORLD_")
# ... but these are the user's settings (MCA parameters of PMIx and PRRTE,
# such as oversubscription), which the next launch needs as much as this one
USER_PREFIXES = ("PMIX_MCA_", "PRTE_MCA_")


def is_launch_variable(name: str) -> bool:
    return name.startswith(LAUNCH_PREFIXES) and not name.startswith(USER_PREFIXES)


def drop_stale_launch_variables(launch_env) -> None:
    """In a rank, once the program's environment is restored: variables of
    an MPI launch the source was part of are not this launch's (a stale
    PMI_PORT or PMIX_SERVER_URI would break MPI_Init here); ``launch_env``
    is the environment this launch started the rank with."""
    for name in [k for k in os.environ if is_launch_variable(k) and k not in launch_env]:
        del os.environ[name]


def mpi():
    """The ``mpi4py.MPI`` module (imported, so MPI is initialised)."""
    module = sys.modules.get("mpi4py.MPI")
    if module is None:
        from mpi4py import MPI as module
    return module


def parent_comm(MPI, parent):
    if parent == "world":
        return MPI.COMM_WORLD
    if parent == "self":
        return MPI.COMM_SELF
    return recorded[parent][0]


def make(MPI, recipe):
    """Carry out ``recipe`` (collective over its parent)."""
    kind, parent = recipe[0], recipe[1]
    base = parent_comm(MPI, parent)
    if kind == "dup":
        return base.Dup()
    if kind == "split":
        return base.Split(recipe[2], recipe[3])
    if kind == "create":
        ranks = recipe[2]
        group = base.Get_group()
        try:
            sub = group.Incl(ranks) if ranks else MPI.GROUP_EMPTY
            try:
                return base.Create(sub)
            finally:
                if sub != MPI.GROUP_EMPTY:
                    sub.Free()
        finally:
            group.Free()
    raise ValueError(f"unknown communicator recipe {kind!r}")


def rebuild(recipes) -> None:
    """Re-create the recorded communicators on this launch's world, in order.
    A recipe whose parent could not be re-created stays unbuilt (the program
    cannot refer to it: packing refused that)."""
    MPI = mpi()
    del recorded[:]
    for recipe in recipes:
        parent = recipe[1]
        if parent is None or (isinstance(parent, int) and recorded[parent][0] is None):
            recorded.append((None, (recipe[0], None) + tuple(recipe[2:])))
            continue
        recorded.append((make(MPI, recipe), recipe))


def recipes() -> list:
    return [recipe for _, recipe in recorded]


def comm(index):
    """Constructor in payloads: the re-created communicator ``index``."""
    return recorded[index][0]


def group(world_ranks):
    """Constructor in payloads: a group, by its members' ranks in COMM_WORLD."""
    MPI = mpi()
    world = MPI.COMM_WORLD.Get_group()
    try:
        return world.Incl(list(world_ranks))
    finally:
        world.Free()
