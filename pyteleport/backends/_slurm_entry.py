"""Runs in the batch job: resumes the staged program.

``python -c '...main()' STAGE [--protect SIGNAL MAX_RESTARTS] [--detached]``.  Resumes
``STAGE/ckpt.<task>`` if a restarted job left one, else ``STAGE/payload.<task>``
(removed as soon as it is read), reporting the verdict in ``STAGE/status.<task>``.
The program sees the environment it had at the move plus what the job
changed or added (``SLURM_*``, ``setup``), as ``sbatch --export=ALL`` would
give it; :func:`pyteleport.task_index` is the array task's index.
"""
from __future__ import annotations

import atexit
import os
import sys


class _ReadOnce:
    """The payload file, unlinked as soon as the restore entry closes it."""

    def __init__(self, path: str):
        self.path = path
        self.f = open(path, "rb")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def close(self) -> None:
        self.f.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _cleanup(stage: str, tag: str, detached: bool) -> None:
    """At the program's normal end: this task's snapshot; with no source
    following the job (``--detached``), its status too and the stage once empty."""
    for name in (f"ckpt.{tag}", f"status.{tag}") if detached else (f"ckpt.{tag}",):
        try:
            os.unlink(os.path.join(stage, name))
        except OSError:
            pass
    if detached:
        try:
            os.rmdir(stage)
        except OSError:
            pass


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    stage = argv[0]
    protect = None
    if "--protect" in argv:
        at = argv.index("--protect")
        protect = (argv[at + 1], int(argv[at + 2]))
    detached = "--detached" in argv
    job_env = dict(os.environ)
    tag = job_env.get("SLURM_ARRAY_TASK_ID") or "0"
    ckpt = os.path.join(stage, f"ckpt.{tag}")
    payload = os.path.join(stage, f"payload.{tag}")
    try:
        status_fd = os.open(os.path.join(stage, f"status.{tag}"),
                            os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:
        sys.stderr.write(f"pyteleport: cannot write into the stage directory {stage}: {e.strerror}\n")
        sys.exit(2)
    if os.path.exists(ckpt):
        stream = open(ckpt, "rb")      # kept until a newer one replaces it or the program ends
    else:
        try:
            stream = _ReadOnce(payload)
        except OSError as e:
            os.write(status_fd, f"\x1b[PYTELEPORT-STATUS] ERR cannot open {payload}: {e.strerror}\n".encode())
            sys.stderr.write(f"pyteleport: cannot open {payload}: {e.strerror} "
                             "(was the job requeued without a checkpoint?)\n")
            sys.exit(2)

    from .. import _restore

    def protect_job() -> None:
        from .. import slurm
        slurm.protect(signal=protect[0], max_restarts=protect[1], stage=stage)

    index = job_env.get("SLURM_ARRAY_TASK_ID")
    atexit.register(_cleanup, stage, tag, detached)
    _restore.restore(stream, status_fd, launch_env=job_env,
                     task_index=int(index) if index is not None else None,
                     after_context=protect_job if protect is not None else None)
