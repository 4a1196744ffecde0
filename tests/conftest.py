"""Fixtures shared by the tests: a private OpenSSH server (see sshd.py) and
the local single-node Slurm (see slurmctl.py).

The session (the controller of a pytest-xdist run: it alone, after every
worker is done) checks that the tests left nothing behind: no process they
started (see leftovers.py) and no Slurm job of theirs; any found is killed
or cancelled and fails the session.  It stops the local Slurm if the tests
started it and no other test session uses it (see slurmctl.py)."""

import os
import uuid

import pytest

import leftovers
from sshd import SshServer

# how long processes that are ending (a cancelled job's, a server's) get
LEFTOVER_GRACE = 20.0


def _controller(config) -> bool:
    return not hasattr(config, "workerinput")


def _undo_inherited_ignores() -> None:
    """A suite started in the background of a non-interactive shell (``cmd &``)
    or under ``nohup`` inherits SIGINT or SIGHUP ignored, and so would every
    program the tests start (an ignored signal stays ignored across exec):
    the tests that press Ctrl-C or hang up would fail for the way they were
    started.  A handled signal is reset to its default by exec."""
    import signal
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        signal.signal(signal.SIGHUP, lambda *_: None)


def pytest_configure(config):
    _undo_inherited_ignores()
    if _controller(config):
        # inherited by the workers and by everything the tests start
        os.environ[leftovers.TOKEN] = uuid.uuid4().hex
        from slurmctl import register_session
        register_session()
    elif leftovers.TOKEN in os.environ:
        leftovers.register_worker(os.environ[leftovers.TOKEN])


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not _controller(config) or leftovers.TOKEN not in os.environ:
        return
    basetemp = str(config._tmp_path_factory.getbasetemp())
    problems = []
    import shutil
    if shutil.which("squeue"):
        from slurmctl import cancel_jobs_under, jobs_under
        try:
            jobs = jobs_under(basetemp)
        except Exception:       # no cluster: no jobs either
            jobs = []
        if jobs:
            problems.append(f"Slurm jobs left in the queue (cancelled now): {' '.join(jobs)}")
            cancel_jobs_under(basetemp)
    left = leftovers.wait_gone(os.environ[leftovers.TOKEN], basetemp, LEFTOVER_GRACE)
    leftovers.forget_workers(os.environ[leftovers.TOKEN])
    if left:
        problems.append("processes left running (killed now):\n" +
                        "\n".join(f"  {pid} {cmd}" for pid, _, cmd in left))
        leftovers.kill(left)
    if problems:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        text = "the tests left things behind:\n" + "\n".join(problems)
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(text, red=True, bold=True)
        else:
            print(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config):
    if _controller(config) and leftovers.TOKEN in os.environ:
        from slurmctl import release_session
        done = release_session()
        if done:
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(done)


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


@pytest.fixture(autouse=True)
def _cancel_own_jobs(request):
    """After a test that used the cluster: its jobs still queued are cancelled."""
    yield
    tmp_path = request.node.funcargs.get("tmp_path")
    if "slurm_cluster" in request.fixturenames and tmp_path is not None:
        from slurmctl import cancel_jobs_under
        cancel_jobs_under(tmp_path)


# The bash and ssh backends start login shells, which run this machine's
# ~/.bashrc; where that runs `pyenv init`, its `pyenv rehash` takes a lock
# file that a rehash killed half-way (a login shell the handoff-timeout
# tests kill while a loaded machine is still in its rc files) leaves behind,
# and every later login then waits 60 s for it, past the tests' timeouts.
# A rehash holds the lock for well under a second, so one older than
# PYENV_LOCK_AGE is stale: a watcher in each test process removes it.
PYENV_LOCK_AGE = 10.0


def _clear_stale_pyenv_lock(lock: str) -> None:
    import time
    try:
        if time.time() - os.lstat(lock).st_mtime > PYENV_LOCK_AGE:
            os.unlink(lock)
    except OSError:
        pass


@pytest.fixture(scope="session", autouse=True)
def _login_shells_do_not_stall():
    import threading
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    lock = os.path.join(root, "shims", ".pyenv-shim")
    if not os.path.isdir(os.path.dirname(lock)):
        yield
        return
    stop = threading.Event()

    def watch():
        while not stop.wait(1.0):
            _clear_stale_pyenv_lock(lock)

    watcher = threading.Thread(target=watch, name="pyenv-lock-watcher", daemon=True)
    _clear_stale_pyenv_lock(lock)
    watcher.start()
    yield
    stop.set()
    watcher.join()
