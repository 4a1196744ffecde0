"""The ``ssh`` backend: continue on another machine, through the system's
``ssh`` client.

Using the system client means that ``~/.ssh/config``, jump hosts, agents,
ControlMaster sockets and password or two-factor prompts work as they do on
the command line.  Everything travels over that one session (``_stream/backend.py``):
the payload on ssh's stdin (never in a file), the status and the program's
output on its stdout and stderr, Ctrl-C and other signals as frames on its
stdin, delivered by a small relay next to the program.  No terminal is
allocated (``-T``), so binary data passes untouched.
"""
from __future__ import annotations

import shlex
from typing import List, Optional, Sequence, Union

from .._errors import TeleportError
from ._stream.backend import StreamBackend


class SshBackend(StreamBackend):
    """Continue in a Python on ``host``, started through ``ssh``.

    :param host: the machine, as ``ssh`` takes it (a name from
        ``~/.ssh/config``, ``user@host``, an address).
    :param user: login name (``ssh -l``).
    :param port: port (``ssh -p``).
    :param ssh_options: more arguments for ``ssh`` (a list, or a string split
        like a shell would): ``["-J", "gateway", "-o", "ConnectTimeout=10"]``.
    :param ssh: the client to run (default ``ssh``).

    The other options (``python``, ``setup``, ``cwd``, ``env``, ``ship``,
    ``detach``, ``handoff_timeout``, ``ship_cache``) are those of
    :class:`~pyteleport.backends._stream.backend.StreamBackend`.
    """

    name = "ssh"

    def __init__(self, host: str, *, user: Optional[str] = None, port: Union[int, str, None] = None,
                 ssh_options: Union[str, Sequence[str]] = (), ssh: str = "ssh", **options):
        super().__init__(**options)
        if not isinstance(host, str) or not host or host.startswith("-"):
            raise TeleportError(f"ssh backend: host must be a host name, not {host!r}")
        if isinstance(ssh_options, str):
            ssh_options = shlex.split(ssh_options)
        ssh_options = list(ssh_options)
        if not all(isinstance(o, str) for o in ssh_options):
            raise TeleportError(f"ssh backend: ssh_options must be strings, not {ssh_options!r}")
        if port is not None:
            try:
                port = int(port)
            except (TypeError, ValueError):
                raise TeleportError(f"ssh backend: port must be a number, not {port!r}") from None
        self.host = host
        self.user = user
        self.port = port
        self.ssh_options = ssh_options
        self.ssh = ssh

    def argv(self, script: str) -> List[str]:
        argv = [self.ssh, "-T"]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if self.user:
            argv += ["-l", self.user]
        return argv + self.ssh_options + ["--", self.host, script]

    def describe(self) -> str:
        where = f"{self.user}@{self.host}" if self.user else self.host
        if self.port is not None:
            where += f" port {self.port}"
        return f"ssh backend ({where})"
