"""The ``bash`` backend: continue in a Python started by a shell command line.

By default a new login shell on this machine (``bash -lc``); any other
command line that runs its last argument as a shell script works too
(``ssh host``, ``srun --pty=no ...  bash -c``, ``docker exec -i box sh -c``):
that is the form of the original ``bash_teleport("ssh", "host", "setup;")``.
The protocol is the one of ``_stream/backend.py``; see there and ``ssh.py``.
"""
from __future__ import annotations

import os
import shlex
from typing import List, Sequence, Union

from .._errors import TeleportError
from ._stream.backend import StreamBackend

DEFAULT_COMMAND = ("bash", "-lc")
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "posh"}


def _is_script_flag(arg: str) -> bool:
    """``-c`` or a cluster of single-letter flags ending in it (``-lc``, ``-ec``)."""
    return len(arg) >= 2 and arg[0] == "-" and arg[1] != "-" and arg.endswith("c") and arg[1:].isalpha()


def command_line(command: Sequence[str], script: str) -> List[str]:
    """``command`` with ``script`` as its last argument.

    When ``command`` is a shell given ``-c`` followed by words, those words
    and the script become the one ``-c`` argument (``bash -c "source x;"``
    then runs ``source x; SCRIPT``), as ``ssh`` joins its command words.
    """
    argv = list(command)
    if argv and os.path.basename(argv[0]) in _SHELLS:
        for i, arg in enumerate(argv[1:], 1):
            if _is_script_flag(arg):
                words = argv[i + 1:]
                return argv[:i + 1] + [" ".join(words + [script])]
    return argv + [script]


class BashBackend(StreamBackend):
    """Continue in a Python started by a shell command line.

    :param command: the command line (a list, or a string split like a shell
        would), which must run its last argument as a POSIX shell script.
        Default: ``["bash", "-lc"]``, a login shell here.

    The other options (``python``, ``setup``, ``cwd``, ``env``, ``ship``,
    ``detach``, ``handoff_timeout``, ``ship_cache``) are those of
    :class:`~pyteleport.backends._stream.backend.StreamBackend`.
    """

    name = "bash"

    def __init__(self, command: Union[str, Sequence[str], None] = None, **options):
        super().__init__(**options)
        if command is None:
            command = DEFAULT_COMMAND
        elif isinstance(command, str):
            command = shlex.split(command)
        command = [os.fspath(c) for c in command]
        if not command or not all(isinstance(c, str) for c in command):
            raise TeleportError("bash backend: command must be a non-empty command line")
        self.shell_command = command

    def argv(self, script: str) -> List[str]:
        return command_line(self.shell_command, script)

    def own_group(self) -> bool:
        # a shell here: its process group lets a timeout kill what setup started;
        # other commands (ssh, docker) may prompt on the terminal, so they stay in ours
        return os.path.basename(self.shell_command[0]) in _SHELLS

    def describe(self) -> str:
        return f"bash backend ({' '.join(shlex.quote(c) for c in self.shell_command)})"
