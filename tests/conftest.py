"""Fixtures shared by the tests: a private OpenSSH server (see sshd.py) and
the local single-node Slurm (see slurmctl.py)."""

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


@pytest.fixture(scope="session")
def slurm_cluster():
    """The real single-node Slurm of slurm/, started once (never skipped: a
    cluster that cannot start fails the test)."""
    from slurmctl import ensure_cluster
    try:
        ensure_cluster()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)
