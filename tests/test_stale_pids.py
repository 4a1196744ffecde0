"""No signal by a stale pid: pids wrap (at 32768 on many machines, within
one run of this suite), so a process that ended must never be signalled by
its old number, which may be an unrelated process's by then.  (A CI run had
an MPI rank of another test die by SIGKILL.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from pyteleport.backends._spawn import spawn


def test_a_child_reaped_elsewhere_is_never_signalled():
    child = spawn(["/bin/true"])
    os.waitpid(child.pid, 0)      # as a SIGCHLD handler of the program would
    child.send_signal(signal.SIGKILL)   # no os.kill of the old pid (it raised ProcessLookupError)
    child.kill()
    assert child.poll() == 255 and child.wait() == 255


def test_the_boot_program_leaves_a_process_that_is_not_its_watchdog_alone():
    # a process of another session stands where the watchdog's pid was
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        code = ("import os, sys; from pyteleport.backends._stream import boot; "
                "boot._stop_watchdog(); sys.exit(0 if boot.WATCHDOG not in os.environ else 1)")
        env = {**os.environ, "PYTELEPORT_WATCHDOG_PID": str(bystander.pid)}
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
        time.sleep(0.1)
        assert bystander.poll() is None, "the boot program killed a process that was not its watchdog"
    finally:
        bystander.kill()
        bystander.wait()
