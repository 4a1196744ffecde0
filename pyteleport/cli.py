"""Command line: ``pyteleport resume PATH`` and ``pyteleport inspect PATH``."""
from __future__ import annotations

import sys

TYPE_CHECKING = False   # typing (and re) would cost every resumed process milliseconds
if TYPE_CHECKING:
    from typing import List, Optional

USAGE = """usage: pyteleport resume PATH    continue a checkpoint (a file, or an MPI job's directory)
       pyteleport inspect PATH   show what a payload (or an MPI checkpoint directory) holds, without running it
       pyteleport --version"""


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "resume":
        # the resumed program runs from here on: keep this path lean
        import os
        if os.path.isdir(argv[1]):      # an MPI job's checkpoint (pyteleport.mpi)
            from ._mpi_resume import resume_dir
            resume_dir(argv[1].rstrip(os.sep) or os.sep)
        from ._restore import resume_file
        resume_file(argv[1])
        return 0
    if len(argv) == 2 and argv[0] == "inspect":
        return _inspect(argv[1])
    if argv in (["--version"], ["-V"]):
        from . import __version__
        print(f"pyteleport {__version__}")
        return 0
    sys.stderr.write(USAGE + "\n")
    return 2


def _inspect(path: str) -> int:
    import os
    if os.path.isdir(path):
        return _inspect_dir(path)
    from ._payload import PayloadError, read_context
    try:
        with open(path, "rb") as f:
            header, ctx, state_len = read_context(f)
    except OSError as e:
        sys.stderr.write(f"pyteleport: cannot open {path}: {e.strerror}\n")
        return 2
    except PayloadError as e:
        sys.stderr.write(f"pyteleport: {path}: {e}\n")
        return 2
    size = os.path.getsize(path)
    print(f"payload:     {path} ({size:,} bytes; program state {state_len:,} bytes)")
    print(f"python:      {header.python[0]}.{header.python[1]}")
    print(f"pyteleport:  {header.pyteleport_version} (format {header.format_version}, checksum "
          f"{header.checksum})")
    print(f"directory:   {ctx['cwd']}")
    print(f"argv:        {ctx['argv']}")
    print("frames (outermost first):")
    for where in ctx["frames"]:
        print(f"  {where}")
    return 0


def _inspect_dir(path: str) -> int:
    """An MPI job's checkpoint directory: its manifest, then rank 0's payload."""
    import os
    from ._mpi_dir import CheckpointError, rank_file, read_manifest
    try:
        manifest = read_manifest(path)
    except CheckpointError as e:
        sys.stderr.write(f"pyteleport: {e}\n")
        return 2
    print(f"MPI checkpoint: {path} ({manifest.ranks} ranks, Python {manifest.python[0]}."
          f"{manifest.python[1]}, pyteleport {manifest.version}, id {manifest.id})")
    for rank, (size, checksum) in enumerate(manifest.files):
        print(f"  {rank_file(rank, manifest.slot)}: {size:,} bytes, checksum {checksum:016x}")
    return _inspect(os.path.join(path, rank_file(0, manifest.slot)))


if __name__ == "__main__":
    sys.exit(main())
