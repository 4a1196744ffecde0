"""Inputs that must be refused cleanly, or taken literally (finding 8 of
the trust issue): bash cwd that looks like an option, env names the shell
drops, NUL characters."""


import pytest

from progs import describe, run_python, write_program

PROGRAM = """\
import json, os, sys
import pyteleport
start = os.getpid()
try:
    pyteleport.teleport(backend="bash", **json.loads(sys.argv[1]))
except pyteleport.TeleportError as e:
    print("REFUSED", e, flush=True)
print("MOVED" if os.getpid() != start else "HERE", os.path.basename(os.getcwd()), flush=True)
"""


@pytest.mark.parametrize("cwd", ["-", "-P", "--"])
def test_a_cwd_that_looks_like_an_option_is_a_folder(tmp_path, cwd):
    import json
    (tmp_path / cwd).mkdir()
    prog = write_program(tmp_path, PROGRAM)
    proc = run_python([prog, json.dumps({"cwd": cwd})], tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == [f"MOVED {cwd}"], describe(proc)


@pytest.mark.parametrize("options, reason", [
    ({"env": {"é": "1"}}, "names of ASCII letters"),
    ({"env": {"A": "x\0y"}}, "NUL character"),
    ({"cwd": "a\0b"}, "cwd must be"),
])
def test_inputs_no_shell_can_take_are_refused(tmp_path, options, reason):
    import json
    prog = write_program(tmp_path, PROGRAM)
    proc = run_python([prog, json.dumps(options)], tmp_path)
    assert proc.returncode == 0, describe(proc)
    lines = proc.stdout.splitlines()
    assert lines[-1] == f"HERE {tmp_path.name}" and "REFUSED" in lines[0] and reason in lines[0], describe(proc)
    assert "Traceback" not in proc.stderr and "not a valid identifier" not in proc.stderr, describe(proc)
