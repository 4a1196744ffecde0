"""The checkpoint directory of an MPI job: its layout and its manifest.

::

    DIR/               mode 0700
      rank-<i>.pyteleport   rank i's payload (mode 0600, written atomically)
      MANIFEST              written last, by rank 0: the completeness marker

The manifest is a few lines of text (no json: the resuming ranks import as
little as they can)::

    pyteleport-mpi-checkpoint 1
    id <random hex, one per checkpoint>
    ranks <N>
    python <major>.<minor>
    pyteleport <version>
    rank <i> <size in bytes> <crc32 of the payload, hex>     (N lines)

The CRC-32 is the payload's own (its trailer), so checking a rank file
against the manifest reads 4 bytes, and reading the payload checks the rest.
"""
import os

MANIFEST = "MANIFEST"
MAGIC = "pyteleport-mpi-checkpoint"
FORMAT = 1
_TRAILER = 4           # the payload ends with its CRC-32, little-endian


class CheckpointError(Exception):
    """The directory cannot be resumed; the message is one line for the user."""


def rank_file(rank: int) -> str:
    return f"rank-{rank}.pyteleport"


def file_crc(path: str):
    """``(size, crc32)`` of a payload file, from its trailer (raises OSError)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        if size < _TRAILER:
            return size, None
        f.seek(size - _TRAILER)
        return size, int.from_bytes(f.read(_TRAILER), "little")


def render(checkpoint_id: str, python: tuple, version: str, files) -> str:
    """The manifest's text; ``files`` is ``[(size, crc32)]`` by rank."""
    lines = [f"{MAGIC} {FORMAT}", f"id {checkpoint_id}", f"ranks {len(files)}",
             f"python {python[0]}.{python[1]}", f"pyteleport {version}"]
    lines += [f"rank {i} {size} {crc:08x}" for i, (size, crc) in enumerate(files)]
    return "\n".join(lines) + "\n"


class Manifest:
    __slots__ = ("id", "ranks", "python", "version", "files")

    def __init__(self, checkpoint_id, ranks, python, version, files):
        self.id = checkpoint_id
        self.ranks = ranks
        self.python = python
        self.version = version
        self.files = files


def read_manifest(directory: str) -> Manifest:
    """The manifest of ``directory``; CheckpointError if it has none or a bad one."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise CheckpointError(f"{directory}: not a directory")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        present = sorted(n for n in os.listdir(directory) if n.endswith(".pyteleport"))
        what = (f"it holds {', '.join(present)} but no {MANIFEST}: the checkpoint was not finished "
                "(interrupted while writing?)") if present else "it holds no pyteleport checkpoint"
        raise CheckpointError(f"{directory} is not a complete MPI checkpoint: {what}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    try:
        lines = [line.split() for line in text.splitlines()]
        if lines[0] != [MAGIC, str(FORMAT)]:
            raise ValueError
        fields = {words[0]: words[1:] for words in lines[1:5]}
        ranks = int(fields["ranks"][0])
        major, minor = fields["python"][0].split(".")
        files = []
        for i, words in enumerate(lines[5:5 + ranks]):
            if words[:2] != ["rank", str(i)]:
                raise ValueError
            files.append((int(words[2]), int(words[3], 16)))
        if len(files) != ranks or not text.endswith("\n"):
            raise ValueError
        return Manifest(fields["id"][0], ranks, (int(major), int(minor)),
                        fields["pyteleport"][0], files)
    except (ValueError, KeyError, IndexError):
        raise CheckpointError(f"{path} is not a pyteleport MPI checkpoint manifest "
                              "(damaged, or another format)") from None


def check(directory: str, manifest: Manifest, python: tuple) -> None:
    """Refuse a directory this interpreter cannot resume, or whose rank files
    are missing or not the ones the manifest lists (mixed checkpoints, a
    truncated or replaced file)."""
    if manifest.python != tuple(python):
        want = "%d.%d" % manifest.python
        raise CheckpointError(f"{directory} was written by Python {want}; this is Python "
                              f"{python[0]}.{python[1]}: resume it with Python {want}")
    for rank, (size, crc) in enumerate(manifest.files):
        name = rank_file(rank)
        try:
            found = file_crc(os.path.join(directory, name))
        except FileNotFoundError:
            raise CheckpointError(f"{directory} is incomplete: {name} is missing") from None
        except OSError as e:
            raise CheckpointError(f"cannot read {os.path.join(directory, name)}: {e.strerror}") from None
        if found != (size, crc):
            raise CheckpointError(
                f"{directory}: {name} is not the file this checkpoint wrote (size or checksum differs "
                "from the MANIFEST: files mixed from two checkpoints, or changed since)")


def launch_hint(directory: str, ranks: int) -> str:
    return f"mpirun -n {ranks} pyteleport resume {directory}"
