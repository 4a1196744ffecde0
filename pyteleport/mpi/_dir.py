"""The checkpoint directory of an MPI job: its layout and its manifest.

::

    DIR/               mode 0700
      rank-<i>.<slot>.pyteleport   rank i's payload (0600); <slot> is a or b
      MANIFEST                     written last, by rank 0: names the slot
                                   of the checkpoint, and so commits it

Checkpoints into the same directory alternate between the two slots: a new
one is written over the files of the slot the MANIFEST does not name (the
checkpoint before the previous one), then replacing the MANIFEST
(atomically) switches to it.  So a checkpoint that fails or is killed
half-way leaves the previous one whole and resumable, and a job that
checkpoints again and again rewrites files in place instead of creating and
freeing hundreds of megabytes each time (the directory holds two copies of
the state).

The manifest is a few lines of text (no json: the resuming ranks import as
little as they can)::

    pyteleport-mpi-checkpoint 2
    id <random hex, one per checkpoint>
    slot <a or b>
    ranks <N>
    python <major>.<minor>
    pyteleport <version>
    rank <i> <size in bytes> <checksum of the payload, hex>  (N lines)

The checksum is the payload's own (its trailer), so checking a rank file
against the manifest reads 8 bytes, and reading the payload checks the rest.
"""
import os

MANIFEST = "MANIFEST"
MAGIC = "pyteleport-mpi-checkpoint"
FORMAT = 2
SLOTS = ("a", "b")
_HEADER = ("id", "slot", "ranks", "python", "pyteleport")
_TRAILER = 8           # the payload ends with its 64-bit checksum, little-endian


class CheckpointError(Exception):
    """The directory cannot be resumed; the message is one line for the user."""


def rank_file(rank: int, slot: str) -> str:
    return f"rank-{rank}.{slot}.pyteleport"


def other_slot(slot) -> str:
    """The slot a new checkpoint is written to, after one in ``slot`` (or None)."""
    return "b" if slot == "a" else "a"


def rank_files(directory: str) -> list:
    """``[(name, rank, slot)]`` of the rank files in ``directory``, by slot and rank."""
    found = []
    for name in os.listdir(directory):
        parts = name.split(".")
        if (len(parts) == 3 and parts[2] == "pyteleport" and parts[1] in SLOTS
                and parts[0].startswith("rank-") and parts[0][5:].isdigit()):
            found.append((name, int(parts[0][5:]), parts[1]))
    return sorted(found, key=lambda f: (f[2], f[1]))


def file_checksum(path: str):
    """``(size, checksum)`` of a payload file, from its trailer (raises OSError)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        if size < _TRAILER:
            return size, None
        f.seek(size - _TRAILER)
        return size, int.from_bytes(f.read(_TRAILER), "little")


def render(checkpoint_id: str, slot: str, python: tuple, version: str, files) -> str:
    """The manifest's text; ``files`` is ``[(size, checksum)]`` by rank."""
    lines = [f"{MAGIC} {FORMAT}", f"id {checkpoint_id}", f"slot {slot}", f"ranks {len(files)}",
             f"python {python[0]}.{python[1]}", f"pyteleport {version}"]
    lines += [f"rank {i} {size} {checksum:016x}" for i, (size, checksum) in enumerate(files)]
    return "\n".join(lines) + "\n"


class Manifest:
    __slots__ = ("id", "slot", "ranks", "python", "version", "files")

    def __init__(self, checkpoint_id, slot, ranks, python, version, files):
        self.id = checkpoint_id
        self.slot = slot
        self.ranks = ranks
        self.python = python
        self.version = version
        self.files = files


def read_manifest(directory: str) -> Manifest:
    """The manifest of ``directory``; CheckpointError if it has none or a bad one."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isdir(directory):
        raise CheckpointError(f"{directory}: not a directory")
    from .._payload.private import UnsafeFile, check_dir, open_fd
    try:
        # others could replace its files (their content is signed, which rank
        # files form the checkpoint is not)
        check_dir(directory, "the checkpoint directory", loose=0o022)
        with open(open_fd(path, "the manifest"), "rb") as f:
            text = f.read(1 << 20).decode("utf-8")
    except UnsafeFile as e:
        raise CheckpointError(str(e)) from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{path} is not a pyteleport MPI checkpoint manifest (not text)") from None
    except FileNotFoundError:
        present = [name for name, _, _ in rank_files(directory)]
        what = (f"it holds {', '.join(present)} but no {MANIFEST}: the checkpoint was not finished "
                "(interrupted while writing?)") if present else "it holds no pyteleport checkpoint"
        raise CheckpointError(f"{directory} is not a complete MPI checkpoint: {what}") from None
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    try:
        lines = [line.split() for line in text.splitlines()]
        if lines[0] != [MAGIC, str(FORMAT)]:
            raise ValueError
        head = len(_HEADER) + 1
        if [words[0] for words in lines[1:head]] != list(_HEADER):
            raise ValueError
        fields = {words[0]: words[1] for words in lines[1:head]}
        ranks = int(fields["ranks"])
        major, minor = fields["python"].split(".")
        files = []
        for i, words in enumerate(lines[head:head + ranks]):
            if words[:2] != ["rank", str(i)]:
                raise ValueError
            files.append((int(words[2]), int(words[3], 16)))
        if (len(files) != ranks or len(lines) != head + ranks or fields["slot"] not in SLOTS
                or not text.endswith("\n")):
            raise ValueError
        return Manifest(fields["id"], fields["slot"], ranks, (int(major), int(minor)),
                        fields["pyteleport"], files)
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
    for rank, (size, checksum) in enumerate(manifest.files):
        name = rank_file(rank, manifest.slot)
        try:
            found = file_checksum(os.path.join(directory, name))
        except FileNotFoundError:
            raise CheckpointError(f"{directory} is incomplete: {name} is missing") from None
        except OSError as e:
            raise CheckpointError(f"cannot read {os.path.join(directory, name)}: {e.strerror}") from None
        if found != (size, checksum):
            raise CheckpointError(
                f"{directory}: {name} is not the file this checkpoint wrote (size or checksum differs "
                "from the MANIFEST: files mixed from two checkpoints, or changed since)")


def launch_hint(directory: str, ranks: int) -> str:
    return f"mpirun -n {ranks} pyteleport resume {directory}"
