"""The stage: a private directory both the submit host and the job see.

Layout of one move (``<stage_dir>/job-<pid>-<random>/``, mode 0700)::

    payload.<task>   the program, one hard link per array task (0 otherwise),
                     mode 0600; each task unlinks its own once the program
                     runs (or keeps it as its ckpt: warned before it ran)
    status.<task>    the task's verdict (the restore entry's status line)
    ckpt.<task>      the newest snapshot taken at a time-limit or preemption
                     signal; a restarted job resumes it instead of the payload
    next.<jobid>     the job that continues job <jobid>'s program when Slurm
                     refused to requeue it (written before <jobid> ends)
    exit.<jobid>     the program's exit status in job <jobid>, written as it
                     exits: the job's outcome once Slurm has forgotten the job
    source           the lease of the source while the job waits for the
                     payload: its host, pid and start time, locked by it
                     (fcntl) until the payload is staged
"""
from __future__ import annotations

import os
import shlex
import shutil
from typing import Iterable, List, Optional

from ..._errors import TeleportError


def default_stage_dir() -> str:
    return os.path.join(os.getcwd(), ".pyteleport")


def task_tag(environ=os.environ) -> str:
    return environ.get("SLURM_ARRAY_TASK_ID") or "0"


# the job directory of a move that created stage_dir: the only one that
# removes it (once empty); a stage_dir that was there before stays
OWN_BASE = "-own"


def make_stage(stage_dir: Optional[str]) -> str:
    """A new private directory under ``stage_dir`` (created 0700 if missing;
    an existing one must be this user's and not writable by others, unless
    it is sticky like /tmp: others could replace the job's directory)."""
    from ..._payload.private import UnsafeFile, check_dir
    base = os.path.abspath(os.path.expanduser(stage_dir or default_stage_dir()))
    try:
        existed = os.path.isdir(base)
        os.makedirs(base, mode=0o700, exist_ok=True)
        check_dir(base, "stage_dir", loose=0o022, sticky_ok=True)
        path = os.path.join(base, f"job-{os.getpid()}-{os.urandom(4).hex()}{'' if existed else OWN_BASE}")
        os.mkdir(path, 0o700)
        os.chmod(path, 0o700)
    except UnsafeFile as e:
        raise TeleportError(f"slurm backend: {e}") from None
    except OSError as e:
        raise TeleportError(f"slurm backend: cannot create the stage directory under {base!r}: "
                            f"{e.strerror} (set stage_dir to a directory the job's nodes also see)") from None
    return path


LEASE = "source"


def process_start(pid: int) -> Optional[str]:
    """The start time of process ``pid`` (clock ticks since boot), None if gone:
    with the pid it names one process, even once the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class Lease:
    """The source's lease on ``stage`` while a submitted job waits for the
    payload: a file naming the source (host, pid, start time) that it holds
    a POSIX lock on (no thread: the program is about to be packed, threads
    and all).  The kernel, or the file server of a shared folder, drops the
    lock when the process dies, however it dies."""

    def __init__(self, stage: str):
        import fcntl
        self.path = os.path.join(stage, LEASE)
        text = f"{os.uname().nodename}\n{os.getpid()}\n{process_start(os.getpid())}\n"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                          | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            os.write(self.fd, text.encode())
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.stop()
            raise

    def stop(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def source_gone(stage: str) -> bool:
    """Whether the source that holds ``stage``'s lease is gone: on its host,
    its process has ended; anywhere, its lock on the lease is free.  No
    lease (an older source): never."""
    import fcntl
    path = os.path.join(stage, LEASE)
    try:
        with open(path) as f:
            host, pid, start = f.read().split("\n")[:3]
        if host == os.uname().nodename and pid.isdigit() and process_start(int(pid)) != start:
            return True
        fd = os.open(path, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0))
    except (OSError, ValueError):
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False       # held: the source is alive
    finally:
        os.close(fd)       # (releases the lock if this process took it)
    return True


def write_payload(path: str, payload) -> None:
    """Write ``payload`` to ``path`` atomically, mode 0600 (raises OSError)."""
    from ..._payload.container import write_file
    write_file(payload, path, f"stage {os.path.basename(path)}")


def stage_payload(stage: str, payload, tasks: Iterable[int]) -> None:
    """``payload.<task>`` for every task: one file, hard-linked."""
    tasks = list(tasks)
    first = os.path.join(stage, f"payload.{tasks[0]}")
    try:
        write_payload(first, payload)
        for task in tasks[1:]:
            os.link(first, os.path.join(stage, f"payload.{task}"))
    except OSError as e:
        raise TeleportError(f"slurm backend: cannot write the payload into {stage!r}: {e}") from None
    except TeleportError as e:
        raise TeleportError(f"slurm backend: {e}") from None


def note_path(stage: str, kind: str, job_id: str) -> str:
    """``STAGE/next.<jobid>`` or ``STAGE/exit.<jobid>``."""
    return os.path.join(stage, f"{kind}.{job_id}")


def write_note(stage: str, kind: str, job_id: str, text: str) -> None:
    """Write a one-line note atomically (raises OSError)."""
    path = note_path(stage, kind, job_id)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_note(stage: Optional[str], kind: str, job_id: str) -> Optional[str]:
    if not stage:
        return None
    try:
        with open(note_path(stage, kind, job_id), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def remove_stage(stage: str) -> None:
    shutil.rmtree(stage, ignore_errors=True)
    remove_base(stage)


def remove_base(stage: str) -> None:
    """The shared stage_dir, once empty, if this move created it, or if it
    is pyteleport's own default (pyteleport.slurm.protect()'s stage has a
    fixed name, so that a requeued job finds it)."""
    base = removable_base(stage)
    if base:
        try:
            os.rmdir(base)
        except OSError:
            pass


def removable_base(stage: str) -> str:
    """The folder remove_base() removes once empty, or ""."""
    base = os.path.dirname(stage)
    return base if stage.endswith(OWN_BASE) or os.path.basename(base) == ".pyteleport" else ""


def check_stage(stage: str) -> Optional[str]:
    """Why the job must not use ``stage`` (another user's, or others could
    change it), or None."""
    from ..._payload.private import UnsafeFile, check_dir
    try:
        check_dir(stage, "the stage directory")
    except UnsafeFile as e:
        return str(e)
    except OSError as e:
        return f"cannot use the stage directory {stage}: {e.strerror}"
    return None


ENTRY = "pyteleport.backends.slurm._entry:main"


def entry_command(python: str, stage: str, entry_args: Iterable[str] = (), entry: str = ENTRY,
                  block: Optional[str] = None) -> List[str]:
    """The command line of a job-side entry (``module:function``; default the
    restore entry, :mod:`._entry`); ``block``: the signal it blocks first
    thing (see :func:`..entry_code`)."""
    from .. import entry_code
    return [python, "-c", entry_code(entry, block), stage, *entry_args]


def signal_name(sig) -> str:
    """``sig`` (``"USR2"``, ``"SIGUSR2"``, ``12``) as ``sh``'s ``trap`` spells
    it, and Python's signal module after ``SIG``: ``USR2``."""
    import signal
    from ...slurm import _signum
    return signal.Signals(_signum(sig)).name[3:]


LOGIN_BASH = "/bin/bash -l"


def job_script(python: str, stage: str, setup: Optional[str], entry_args: Iterable[str] = (),
               launcher: Iterable[str] = (), entry: str = ENTRY, protect: Optional[str] = None) -> str:
    """The batch script: ``setup`` (in a login bash, else sh), then ``exec`` Python on the restore entry
    (``exec``, so that Slurm's ``--signal=B:...`` reaches the program), or on
    ``entry`` through ``launcher`` (MPI ranks: ``srun``).

    ``protect``: the warning signal of a protected job, whose default action
    would end the job if it came before the program's handler is installed:
    the script remembers one that comes during ``setup`` (the entry gets
    ``--signalled``) and ignores it across ``exec`` (a trapped signal would
    be reset to its default), also blocked there when ``env --block-signal``
    exists (so that one that comes while Python starts is kept pending), and
    the entry blocks it first thing, so that one that comes later waits until
    the program is rebuilt (see :func:`pyteleport.slurm.start`)."""
    # setup lines run as in users' own sbatch scripts: in a login bash, where
    # `module load`, `conda activate` and `source venv/bin/activate` work
    shell = LOGIN_BASH if setup and os.path.exists(LOGIN_BASH.split()[0]) else "/bin/sh"
    lines = [f"#!{shell}", "# pyteleport: resume a moved program (see pyteleport/backends/slurm/)"]
    sig = signal_name(protect) if protect else None
    if sig:
        lines.append(f"trap 'pyteleport_signalled=1' {sig}")
    if setup:
        lines += ["set -e", setup.rstrip("\n"), "set +e"]
    cmd = " ".join(shlex.quote(c) for c in [*launcher, *entry_command(python, stage, entry_args, entry, sig)])
    if sig:
        lines.append(f"trap '' {sig}")
        if not launcher:
            # also blocked across exec where GNU env can (coreutils 8.31+): one
            # that comes while Python starts then waits for the entry instead
            # of being discarded as an ignored signal
            lines.append(f"env --block-signal={sig} true 2>/dev/null && "
                         f"pyteleport_block='env --block-signal={sig}'")
            cmd = "${pyteleport_block} " + cmd
        cmd += " ${pyteleport_signalled:+--signalled}"
    lines.append("exec " + cmd)
    return "\n".join(lines) + "\n"
