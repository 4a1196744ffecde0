"""Command line: ``pyteleport resume PATH``, ``pyteleport inspect PATH``, ``pyteleport follow JOBID``."""
from __future__ import annotations

import sys

TYPE_CHECKING = False   # typing (and re) would cost every resumed process milliseconds
if TYPE_CHECKING:
    from typing import List, Optional

USAGE = """\
usage: pyteleport resume [--key FILE] PATH    continue a checkpoint (a file, or an MPI job's directory)
       pyteleport inspect [--key FILE] [--json] PATH
                                              show what a payload (or an MPI checkpoint directory) holds
                                              and why it is that size, without running it
       pyteleport follow JOBID                follow a Slurm job pyteleport submitted (its output, to its end)
       pyteleport --version
       pyteleport COMMAND --help"""

COMMANDS = {
    "resume": """\
usage: pyteleport resume [--key FILE] PATH

Continue the program saved in PATH (a checkpoint file, or the directory of
an MPI job's checkpoint: mpirun -n N pyteleport resume DIR) from where it
was saved, in this process.  The file is verified first: a file that is not
a payload, truncated, corrupted, unsigned or signed with another key, not
yours or writable by others is refused (exit code 2) before any of it runs.

  --key FILE   check the signature with the key FILE (a payload signed
               elsewhere that you trust) instead of yours
               ($PYTELEPORT_KEY_FILE does the same)""",
    "inspect": """\
usage: pyteleport inspect [--key FILE] [--json] PATH

Verify the payload PATH (or an MPI checkpoint directory: its manifest, then
rank 0's file), then show what it holds: Python version, signature,
working directory, argv; each frame's variables with their types and sizes;
__main__'s globals, largest first; the largest objects and where they are;
the modules that resuming it imports and the files it reopens.  Sizes are
bytes in the payload.  Nothing of the file is executed: the program state
is read as a stream of pickle opcodes, never unpickled.

  --key FILE   check the signature with the key FILE instead of yours
  --json       the same facts as one JSON object, for tools""",
    "follow": """\
usage: pyteleport follow JOBID

Follow the Slurm job JOBID as teleport(backend="slurm", wait=True) does:
copy its output files (from their start) to this terminal until the job
ends, pass SIGTERM, SIGUSR1 and SIGUSR2 on to it, and exit with its exit
code.  Ctrl-C asks whether to cancel the job; a hang-up leaves it running.""",
}


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        sys.stderr.write(USAGE + "\n")
        return 2
    command, rest = argv[0], argv[1:]
    if command in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if command in ("--version", "-V"):
        from . import __version__
        print(f"pyteleport {__version__}")
        return 0
    if command not in COMMANDS:
        sys.stderr.write(f"pyteleport: unknown command {command!r}: the commands are "
                         f"{', '.join(COMMANDS)} (pyteleport --help)\n")
        return 2
    parsed = _parse(command, rest)
    if isinstance(parsed, int):
        return parsed
    key, path, as_json = parsed
    if key is not None:
        import os
        from ._payload.signing import KEY_ENV
        os.environ[KEY_ENV] = os.path.abspath(key)
    if command == "inspect":
        return _inspect(path, as_json)
    if command == "follow":
        return _follow(path, key)
    # the resumed program runs from here on: keep this path lean
    import os
    if os.path.isdir(path) and not os.path.islink(path):
        # an MPI job's checkpoint (pyteleport.mpi)
        from .mpi._resume import resume_dir
        resume_dir(path.rstrip(os.sep) or os.sep)
    from ._core.restore import resume_file
    resume_file(path)
    return 0


def _parse(command: str, args: List[str]):
    """``(key file or None, path, --json)`` of ``pyteleport COMMAND ARGS``,
    or the exit code when there is nothing to run (help shown, bad arguments)."""
    key, paths, as_json = None, [], False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            print(COMMANDS[command])
            return 0
        if arg == "--key" and i + 1 < len(args):
            key = args[i + 1]
            i += 2
            continue
        if arg.startswith("--key="):
            key = arg[len("--key="):]
        elif arg == "--json" and command == "inspect":
            as_json = True
        elif arg == "--":
            paths += args[i + 1:]
            break
        elif arg.startswith("-") and arg != "-":
            return _usage_error(command, f"unknown option {arg!r}")
        else:
            paths.append(arg)
        i += 1
    if len(paths) != 1:
        return _usage_error(command, "give one PATH" if not paths else
                            f"one PATH only, not {len(paths)}: {' '.join(paths)}")
    return key, paths[0], as_json


def _follow(job_id: str, key) -> int:
    if key is not None or not job_id.replace("_", "").isdigit():
        return _usage_error("follow", f"give a Slurm job id, not {job_id!r}" if key is None
                            else "--key is not an option of follow")
    from ._errors import TeleportError
    from .backends.slurm._target import follow_job
    try:
        return follow_job(job_id)
    except TeleportError as e:
        sys.stderr.write(f"pyteleport: {e}\n")
        return 2


def _usage_error(command: str, message: str) -> int:
    sys.stderr.write(f"pyteleport {command}: {message}\n{COMMANDS[command].splitlines()[0]}\n"
                     f"(pyteleport {command} --help)\n")
    return 2


def _inspect(path: str, as_json: bool = False, directory: Optional[dict] = None) -> int:
    """Verify the payload (signature, else checksum), then show what it
    holds (see ``_inspect.py``): nothing in the file is executed."""
    import os
    if os.path.isdir(path) and not os.path.islink(path):
        return _inspect_dir(path, as_json)
    from ._payload.container import PayloadError, inspect_payload
    from ._payload.private import UnsafeFile, open_file
    from . import _inspect as report
    try:
        with open_file(path, "payload", owner=False) as f:
            size = report.file_size(f)
            header, ctx, payload = inspect_payload(f, any_python=True)
        facts = report.report(path, header, ctx, payload, size)
    except OSError as e:
        sys.stderr.write(f"pyteleport: cannot open {path}: {e.strerror}\n")
        return 2
    except (PayloadError, UnsafeFile) as e:
        sys.stderr.write(f"pyteleport: {path}: {e}\n")
        return 2
    if as_json:
        import json
        if directory is not None:
            facts = {"mpi_checkpoint": directory, "rank0": facts}
        print(json.dumps(facts, indent=1, default=repr))   # the context may hold bytes
    else:
        print(report.render(facts))
    return 0


def _inspect_dir(path: str, as_json: bool) -> int:
    """An MPI job's checkpoint directory: its manifest, then rank 0's payload."""
    import os
    from .mpi._dir import CheckpointError, rank_file, read_manifest
    try:
        manifest = read_manifest(path)
    except CheckpointError as e:
        sys.stderr.write(f"pyteleport: {e}\n")
        return 2
    files = [{"file": rank_file(rank, manifest.slot), "bytes": size, "checksum": f"{checksum:016x}"}
             for rank, (size, checksum) in enumerate(manifest.files)]
    directory = {"path": path, "ranks": manifest.ranks, "python": f"{manifest.python[0]}.{manifest.python[1]}",
                 "pyteleport": manifest.version, "id": manifest.id, "files": files}
    if not as_json:
        print(f"MPI checkpoint: {path} ({manifest.ranks} ranks, Python {manifest.python[0]}."
              f"{manifest.python[1]}, pyteleport {manifest.version}, id {manifest.id})")
        for f in files:
            print(f"  {f['file']}: {f['bytes']:,} bytes, checksum {f['checksum']}")
    return _inspect(os.path.join(path, rank_file(0, manifest.slot)), as_json, directory)


if __name__ == "__main__":
    sys.exit(main())
