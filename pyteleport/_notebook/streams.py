"""A kernel's standard streams are Python objects that send to the cell, not
file descriptors: what the target (and a Slurm job's follower) writes to
file descriptors 1 and 2 is relayed to them while the cell is away."""
from __future__ import annotations

import codecs
import os
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List


def needed() -> bool:
    """Whether ``sys.stdout`` is a kernel's stream rather than descriptor 1."""
    return type(sys.stdout).__module__.split(".")[0] == "ipykernel"


class Relay:
    """While active, descriptors 1 and 2 are pipes whose bytes go to
    ``sys.stdout`` and ``sys.stderr`` as they come (children inherit them)."""

    def __init__(self):
        self.saved: List[int] = []
        self.threads: List[threading.Thread] = []

    def __enter__(self) -> "Relay":
        for fd, stream in ((1, sys.stdout), (2, sys.stderr)):
            read_end, write_end = os.pipe()
            self.saved.append(os.dup(fd))
            os.dup2(write_end, fd)
            os.close(write_end)
            thread = threading.Thread(target=_pump, args=(read_end, stream),
                                      name=f"pyteleport-relay-{fd}", daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        for fd, saved in zip((1, 2), self.saved):
            os.dup2(saved, fd)       # the pipe's last writer here: its reader sees the end
            os.close(saved)
        for thread in self.threads:
            thread.join(timeout=10)


def _pump(read_end: int, stream) -> None:
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    try:
        while True:
            data = os.read(read_end, 65536)
            text = decoder.decode(data, final=not data)
            if text:
                stream.write(text)
                stream.flush()
            if not data:
                return
    except (OSError, ValueError):
        return
    finally:
        os.close(read_end)
