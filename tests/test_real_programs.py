"""The real-program suite: third-party programs (pyperformance's benchmark
bodies, vendored in tests/real/programs/ with their licence) moved (a) at
evenly spread line events of their own file and (b) wherever a CPU-time
timer signal interrupts them, through pyteleport's signal-time path (the one
``pyteleport.slurm`` takes on Slurm's warning signal), then resumed; the
output must equal an unmoved run's, line by line (same PYTHONHASHSEED), and
the program must go on in a new process.  A refusal is accepted only for a
reason README's Limits says is impossible (``driver.ALLOWED_REFUSALS``).

``PYTELEPORT_REAL_MOVES=N`` moves each program at N line events and N
signals (default 3); ``python tests/real/driver.py --moves N`` does the same
outside pytest.
"""
from __future__ import annotations

import os

import pytest

from real import driver

MOVES = int(os.environ.get("PYTELEPORT_REAL_MOVES") or 3)

# Cases that fail on the current main, each for a bug being fixed elsewhere.
# Strict where every such move fails (a fix makes them pass, and the mark
# must go); not strict where it depends on where the signal lands (or, for
# go, on the fresh random numbers the target draws).
KNOWN: dict = {}   # none today


def _cases():
    for name in driver.programs():
        for kind in ("line", "signal"):
            for i in range(MOVES):
                marks = []
                known = KNOWN.get((name, kind, i)) or KNOWN.get((name, kind)) or KNOWN.get(name)
                if known:
                    reason, strict = known
                    marks.append(pytest.mark.xfail(strict=strict, reason=f"issue 10: {reason}"))
                yield pytest.param(name, kind, i, marks=marks, id=f"{name}-{kind}{i}")


_baselines: dict = {}


def _baseline(name, tmp_path_factory):
    """(reference run, line events) of unmoved runs, once per worker."""
    if name not in _baselines:
        workdir = tmp_path_factory.mktemp(f"ref-{name}")
        reference = driver.run(name, "none", workdir=workdir)
        assert reference.ok and reference.stdout, reference.describe()
        counted = driver.run(name, "count", workdir=workdir)
        assert counted.ok, counted.describe()
        # the counting trace changes nothing the program prints
        assert counted.stdout == reference.stdout, counted.describe()
        _baselines[name] = (reference, int(counted.entries("lines")[0]))
    return _baselines[name]


@pytest.mark.parametrize("name, kind, index", list(_cases()))
def test_real_program_moves(name, kind, index, tmp_path, tmp_path_factory, record_property):
    reference, lines = _baseline(name, tmp_path_factory)
    if kind == "line":
        action = "checkpoint" if index % 2 == 0 else "teleport"
        moved = driver.run(name, f"line:{driver.spread(lines, MOVES)[index]}", action, workdir=tmp_path)
    else:
        action = "teleport" if index % 2 == 0 else "checkpoint"
        delay = driver.signal_delay(reference, index, MOVES)
        moved = driver.run_signal(name, delay, action, tmp_path)
    record_property("refusals", len(moved.refusals))
    record_property("moved", (moved.entries("moved") or ["-"])[0])
    problems = driver.check(reference, moved)
    assert not problems, "\n".join(problems) + "\n" + moved.describe()
    record_property("refusal_kinds", sorted({driver.refusal_category(r) for r in moved.refusals}))
