"""The public API and the installed package metadata."""

import sys

import pytest

from progs import describe, run_python, write_program


def test_public_names():
    import pyteleport

    assert callable(pyteleport.teleport)
    assert callable(pyteleport.checkpoint)
    assert issubclass(pyteleport.TeleportError, RuntimeError)
    assert callable(pyteleport.protect) and pyteleport.EXIT_SAVED == 75
    # shown under its public name (repr, tracebacks), pickled by it too
    assert repr(pyteleport.TeleportError) == "<class 'pyteleport.TeleportError'>"
    import pickle
    assert type(pickle.loads(pickle.dumps(pyteleport.TeleportError("x")))) is pyteleport.TeleportError


@pytest.mark.parametrize("backend, options, message", [
    ("slurm", {"partiton": "gpu"}, "unknown option 'partiton' for the slurm backend; did you mean "
                                   "'partition'? (its options: account, array, "),
    ("local", {"pyton": "python3"}, "unknown option 'pyton' for the local backend; did you mean "
                                    "'python'? (its options: handoff_timeout, python)"),
    # an option of the base class (ssh passes **options on to the stream backends')
    ("ssh", {"host": "h", "shipp": []}, "unknown option 'shipp' for the ssh backend; did you mean 'ship'?"),
    ("mpirun", {"zzz": 1}, "unknown option 'zzz' for the mpirun backend (its options: "),
    ("ssh", {}, "the ssh backend needs the option host="),
    ("slurm", {"time": "1h"}, "slurm backend: time='1h' is not a Slurm time limit: use minutes ('90'), "
                              "'MM:SS', 'HH:MM:SS', 'D-HH', 'D-HH:MM', 'D-HH:MM:SS', 'UNLIMITED'"),
    # the warning would come as the job starts: requeued every ~30 s, never going on
    ("slurm", {"time": "2", "requeue": True}, "slurm backend: grace=180 s is not shorter than the "
                                              "job's time limit (2, 120 s)"),
    ("slurm", {"sbatch_options": {"time": "0-0:03:00"}, "requeue": True, "grace": 200},
     "slurm backend: grace=200 s is not shorter than the job's time limit (0-0:03:00, 180 s)"),
])
def test_a_bad_backend_option_is_named_with_the_valid_ones(backend, options, message):
    import pyteleport
    with pytest.raises(pyteleport.TeleportError) as e:
        pyteleport.teleport(backend, **options)
    assert str(e.value).startswith(message), e.value


@pytest.mark.parametrize("time, grace, said", [("1", 30, True), ("1", 29, False), ("10", 180, False)])
def test_a_grace_close_to_the_time_limit_is_said(time, grace, said, capfd):
    """Slurm sends a warning due within its next limit check (30 s) at the
    job's first check, which may come before the batch script runs."""
    from pyteleport.backends import get_backend
    get_backend("slurm", time=time, requeue=True, grace=grace)
    err = capfd.readouterr().err
    line = (f"pyteleport: slurm backend: with time={time} and grace={grace} s, Slurm sends the warning "
            "at its first time-limit check (every 30 s), which can come before the job's script starts "
            "and then is lost; keep grace under the time limit minus 30 s\n")
    assert err == (line if said else ""), err


def test_backend_entry_point():
    from importlib.metadata import entry_points

    eps = entry_points()
    group = eps.select(group="pyteleport.backends") if hasattr(eps, "select") else eps.get("pyteleport.backends", [])
    by_name = {ep.name: ep for ep in group}
    assert "local" in by_name, sorted(by_name)
    assert by_name["local"].value == "pyteleport.backends.local:LocalBackend"
    backend = by_name["local"].load()
    assert backend.__name__ == "LocalBackend"


def test_installed_metadata():
    from importlib.metadata import metadata, version

    assert version("pyteleport") == "0.1.0"
    spec = metadata("pyteleport")["Requires-Python"]
    assert sorted(s.strip() for s in spec.split(",")) == ["<3.16", ">=3.9"], spec


@pytest.mark.parametrize("call", ["pyteleport.teleport()", "pyteleport.teleport(backend='local')"])
def test_teleport_returns_none_in_a_new_process(tmp_path, call):
    prog = write_program(
        tmp_path,
        f"""\
        import os, sys
        import pyteleport

        before = os.getpid()
        print("BEFORE", flush=True)
        result = {call}
        print("AFTER", os.getpid() != before, repr(result), sys.argv[1:], flush=True)
        """,
    )
    proc = run_python([prog, "a1", "--b"], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == ["BEFORE", "AFTER True None ['a1', '--b']"], describe(proc)


def test_same_interpreter_after_teleport(tmp_path):
    prog = write_program(
        tmp_path,
        """\
        import sys
        import pyteleport

        pyteleport.teleport()
        print(sys.executable, sys.version, flush=True)
        """,
    )
    proc = run_python([prog], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == f"{sys.executable} {sys.version}", describe(proc)
