"""The public API and the installed package metadata."""

import sys

import pytest

from progs import describe, run_python, write_program


def test_public_names():
    import pyteleport

    assert callable(pyteleport.teleport)
    assert callable(pyteleport.checkpoint)
    assert issubclass(pyteleport.TeleportError, RuntimeError)


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
    assert sorted(s.strip() for s in spec.split(",")) == ["<3.14", ">=3.9"], spec


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
