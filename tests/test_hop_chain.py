"""A chain of local moves keeps one waiting process (backends/_adoption.py):
each hop hands its target to the first source and exits; streams, signals
and the exit code still go through."""

import os
import signal
import subprocess
import sys
import time

from progs import describe, run_python, write_program

CHAIN = """\
import os, sys, time
import pyteleport


def parent_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


first = os.getpid()
pids = []
for hop in range(HOPS):
    pyteleport.teleport()
    # the previous hop is on its way out: once gone, this one is the first source's child
    deadline = time.monotonic() + 30
    while os.getppid() != first and time.monotonic() < deadline:
        time.sleep(0.002)
    pids.append(os.getpid())
    print("hop", hop, os.getpid(), os.getppid() == first, flush=True)
    print("err", hop, file=sys.stderr, flush=True)
# only the first source and this hop are left: every earlier hop has exited
# and been reaped (no /proc entry: not even a zombie).  The last of them may
# still be on its way out, or not yet reaped: wait for that, not for a time
deadline = time.monotonic() + 30
while True:
    alive = [p for p in pids[:-1] if os.path.exists(f"/proc/{p}")]
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and parent_of(int(p)) == first]
    if (not alive and children == [os.getpid()]) or time.monotonic() > deadline:
        break
    time.sleep(0.005)
print("alive", alive, "children", children == [os.getpid()], flush=True)
print("read", sys.stdin.readline().strip(), flush=True)
sys.exit(7)
"""


def test_twenty_hops_leave_one_waiting_process(tmp_path):
    prog = write_program(tmp_path, CHAIN.replace("HOPS", "20"))
    proc = run_python([prog], tmp_path, stdin="a line for the last hop\n")
    assert proc.returncode == 7, describe(proc)
    lines = proc.stdout.splitlines()
    hops = [line.split() for line in lines if line.startswith("hop ")]
    assert [int(h[1]) for h in hops] == list(range(20)), describe(proc)
    assert all(h[3] == "True" for h in hops), describe(proc)
    assert len({h[2] for h in hops}) == 20, describe(proc)
    assert lines[-2:] == ["alive [] children True", "read a line for the last hop"], describe(proc)
    assert [line for line in proc.stderr.splitlines() if line.startswith("err ")] == \
        [f"err {i}" for i in range(20)], describe(proc)


SIGNALLED = """\
import os, signal, sys, time
import pyteleport

first = os.getpid()
for hop in range(4):
    pyteleport.teleport()


def on_term(signum, frame):
    print("TERM in the hop", os.getpid(), flush=True)
    sys.exit(3)


signal.signal(signal.SIGTERM, on_term)
while os.getppid() != first:
    time.sleep(0.002)
print("ready", os.getpid(), flush=True)
time.sleep(60)
"""


def test_a_signal_to_the_first_source_reaches_the_last_hop(tmp_path):
    prog = write_program(tmp_path, SIGNALLED)
    source = subprocess.Popen([sys.executable, prog], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        ready = source.stdout.readline().split()
        assert ready[:1] == ["ready"], source.stderr.read()
        time.sleep(0.05)
        source.send_signal(signal.SIGTERM)
        out, err = source.communicate(timeout=60)
    finally:
        if source.poll() is None:
            source.kill()
            source.wait()
    assert out.splitlines() == [f"TERM in the hop {ready[1]}"], (out, err)
    assert source.returncode == 3, err
    assert not os.path.exists(f"/proc/{ready[1]}")


CLOSES_ALL = """\
import os, time
import pyteleport

first = os.getpid()
pyteleport.teleport()
pyteleport.teleport()
os.closerange(3, 1024)        # as a daemonising program does: the chain's pipe too


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


before = cpu_ticks(first)
time.sleep(1)
print("ticks", cpu_ticks(first) - before, flush=True)
"""


def test_the_first_source_sleeps_once_every_hop_closed_the_pipe(tmp_path):
    """A program that closes all its descriptors leaves the chain's pipe at
    end of file: the first source waits on without spinning on it."""
    prog = write_program(tmp_path, CLOSES_ALL)
    proc = run_python([prog], tmp_path)
    assert proc.returncode == 0, describe(proc)
    ticks = int(proc.stdout.split()[-1])
    assert ticks < 20, describe(proc)       # 100 per second when it spins
