"""A real OpenSSH server for the tests, on 127.0.0.1, private to one test session.

:class:`SshServer` makes, in a temporary folder: a host key, client keys, an
``authorized_keys``, an ``sshd_config`` and an ``ssh_config`` with host
aliases, and an ``ssh`` wrapper that uses that config (put its folder first on
``PATH`` to point plain ``ssh NAME`` at the server).  Users' own files
(``~/.ssh``, known hosts) are never read or written.

Host aliases of the ``ssh_config``:

* ``testhost``, ``cartesius``: a normal login (the account's login shell,
  its rc files);
* ``plain``: ``/bin/sh`` runs the command, no rc files (benchmarks: the
  least a login can cost);
* ``foreign``: the same as ``testhost``, in a private mount namespace where the folders
  listed in ``PYTELEPORT_TEST_HIDE`` (``:``-separated, sent with
  ``ssh -o SetEnv=...``) are covered by empty tmpfs mounts: a machine that
  lacks those files.

The login's ``PATH`` starts with a folder of stand-ins for site tools that
``setup`` lines use (``conda``: prints what it was asked, changes nothing);
its ``XDG_CACHE_HOME`` is a folder of the server's (pyteleport's ship cache
stays out of the account's home).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pyteleport-test", "-f", str(path)],
                   check=True, stdin=subprocess.DEVNULL)


FOREIGN = """\
#!/bin/sh
# forced command of the "foreign" key: hide folders, then run what was asked
exec unshare -m sh -c '
IFS=:
for d in $PYTELEPORT_TEST_HIDE; do
    [ -d "$d" ] && mount -t tmpfs -o size=1m,mode=0755 pyteleport-hide "$d"
done
unset IFS PYTELEPORT_TEST_HIDE
exec "$SHELL" -c "$SSH_ORIGINAL_COMMAND"'
"""

PLAIN = """\
#!/bin/sh
# forced command of the "plain" key: no login shell, no rc files
exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"
"""

CONDA = """\
#!/bin/sh
# stand-in for conda in the tests' logins: records the call, changes nothing
echo "conda stand-in: $*" >&2
exit 0
"""


class SshServer:
    """Start with :meth:`start`, stop with :meth:`stop` (by pid)."""

    def __init__(self, directory: Path | None = None):
        self.dir = Path(directory or tempfile.mkdtemp(prefix="pyteleport-sshd-"))
        self.port = 0
        self.proc: subprocess.Popen | None = None

    # -- paths --------------------------------------------------------------
    @property
    def config(self) -> Path:
        """The client's private ssh_config."""
        return self.dir / "ssh_config"

    @property
    def bin(self) -> Path:
        """Folder with an ``ssh`` that uses :attr:`config`."""
        return self.dir / "bin"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    def options(self, host: str = "testhost", **more) -> dict:
        """Options of the ssh backend for this server."""
        opts = {"host": host, "ssh_options": ["-F", str(self.config)]}
        opts.update(more)
        return opts

    def ssh_argv(self, host: str = "testhost") -> list:
        return ["ssh", "-F", str(self.config), host]

    # -- life ---------------------------------------------------------------
    def start(self) -> "SshServer":
        if not os.access(SSHD, os.X_OK):
            raise RuntimeError(f"{SSHD} is missing: install Debian's openssh-server (.ci/run does)")
        d = self.dir
        _keygen(d / "host_key")
        _keygen(d / "user_key")
        _keygen(d / "foreign_key")
        _keygen(d / "plain_key")
        tools = d / "tools"
        tools.mkdir()
        (tools / "conda").write_text(CONDA)
        (tools / "conda").chmod(0o755)
        (d / "foreign.sh").write_text(FOREIGN)
        (d / "foreign.sh").chmod(0o755)
        (d / "plain.sh").write_text(PLAIN)
        (d / "plain.sh").chmod(0o755)
        (d / "authorized_keys").write_text(
            (d / "user_key.pub").read_text()
            + f'command="{d / "foreign.sh"}" ' + (d / "foreign_key.pub").read_text()
            + f'command="{d / "plain.sh"}" ' + (d / "plain_key.pub").read_text()
        )
        # sshd's privilege separation folder (made by the packaged service normally)
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        login_path = f"{tools}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
        last_error = ""
        for _ in range(5):
            self.port = _free_port()
            (d / "sshd_config").write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {d / "host_key"}
PidFile {d / "sshd.pid"}
AuthorizedKeysFile {d / "authorized_keys"}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
AcceptEnv PYTELEPORT_TEST_HIDE
SetEnv PATH={login_path} XDG_CACHE_HOME={d / "cache"}
MaxStartups 64:30:128
LogLevel ERROR
""")
            self.proc = subprocess.Popen([SSHD, "-D", "-f", str(d / "sshd_config"), "-E", str(self.log)],
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            if self._wait_listening(10.0):
                break
            last_error = self.log.read_text() if self.log.exists() else ""
            self.stop()
        else:
            raise RuntimeError(f"sshd did not start: {last_error}")
        common = f"""\
    HostName 127.0.0.1
    Port {self.port}
    User {_user()}
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    GlobalKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
"""
        self.config.write_text(
            f"Host testhost cartesius\n{common}    IdentityFile {d / 'user_key'}\n\n"
            f"Host foreign\n{common}    IdentityFile {d / 'foreign_key'}\n\n"
            f"Host plain\n{common}    IdentityFile {d / 'plain_key'}\n"
        )
        self.bin.mkdir()
        (self.bin / "ssh").write_text(f'#!/bin/sh\nexec {shutil.which("ssh")} -F {self.config} "$@"\n')
        (self.bin / "ssh").chmod(0o755)
        return self

    def _wait_listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def session_pids(self) -> list:
        """pids of the server's per-connection processes (children of the listener)."""
        if self.proc is None:
            return []
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                out.append(int(entry))
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _user() -> str:
    import pwd
    return pwd.getpwuid(os.getuid()).pw_name
