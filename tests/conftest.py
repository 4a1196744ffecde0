"""Fixtures shared by the tests: a private OpenSSH server (see sshd.py)."""

import pytest

from sshd import SshServer


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A real sshd on 127.0.0.1, one per test session (per xdist worker)."""
    server = SshServer(tmp_path_factory.mktemp("sshd")).start()
    try:
        yield server
    finally:
        server.stop()
