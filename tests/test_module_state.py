"""Module state (pyteleport/_state): what the program set in imported
modules is the same after a move, for the standard library, NumPy, an
installed library (tests/scenarios/installed/fakelib, put in a user
site-packages folder so that pyteleport sees it as installed) and the
extension point.  Differential: unmoved vs teleport vs checkpoint + resume;
a checkpoint resumed twice prints the same thing twice."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from harness import SCENARIOS, _env, assert_differential, parse_output, run_command, run_scenario

SCENARIO = "s23_module_state.py"


@pytest.fixture(scope="module")
def installed_env():
    """Environment in which ``fakelib`` is an installed library: it lies in
    the user site-packages folder of a private PYTHONUSERBASE."""
    base = Path(tempfile.mkdtemp(prefix="state-userbase-"))
    env = dict(os.environ, PYTHONUSERBASE=str(base))
    site_dir = subprocess.run([sys.executable, "-c", "import site; print(site.getusersitepackages())"],
                              env=env, capture_output=True, text=True, check=True).stdout.strip()
    shutil.copytree(SCENARIOS / "installed" / "fakelib", Path(site_dir) / "fakelib")
    yield {"PYTHONUSERBASE": str(base), "PYTHONPATH": site_dir}
    shutil.rmtree(base, ignore_errors=True)


CASES = {
    "logging": {},
    "random": {},
    "numpy_random": {},
    "numpy_options": {},
    "warnings": {},
    "decimal": {},
    "interpreter": {},
    "excepthook": dict(returncode=1),
    "atexit": {},
    "stdlib_attribute": {},
    "runtime_class": {},
    "extension": {},
    "unserialisable_library_state": {},
    "rlock": {},
    "held_library_lock": {},
    "torch_random": {},
}


def test_cases_cover_the_scenario():
    import re
    text = (SCENARIOS / SCENARIO).read_text()
    assert sorted(CASES) == sorted(re.findall(r"^def case_(\w+)\(", text, flags=re.M))


@pytest.mark.parametrize("case", sorted(CASES))
def test_module_state(case, installed_env):
    if case == "torch_random":
        # the only adapter whose library is not in the test extra (too big)
        pytest.importorskip("torch")
    results = assert_differential(SCENARIO, args=[case, "{tmp}"], extra_env=installed_env,
                                  **CASES[case])
    out = parse_output(results["teleport"].stdout).lines
    if case == "atexit":
        assert out[-1] == "exit handler 42", out     # once, in the target, at its end
        assert out.count("exit handler 42") == 1, out
    if case == "logging":
        assert "INFO|app.sub|before" in " ".join(out) and "INFO|app.sub|after" in " ".join(out), out
    if case == "excepthook":
        assert "excepthook: ValueError uncaught after the move" in out, out


@pytest.mark.parametrize("case", ["logging", "random", "numpy_random", "decimal", "runtime_class", "extension",
                                  "interpreter"])
def test_checkpoint_resumed_twice(case, installed_env, tmp_path):
    """The same payload resumed twice gives the same output twice."""
    work = tmp_path / "payload"
    work.mkdir()
    first = run_scenario(SCENARIO, "checkpoint", args=[case, str(tmp_path)], extra_env=installed_env,
                         workdir=work)
    assert len(first.steps) == 2 and first.steps[1].returncode == 0, first.describe()
    env = _env("checkpoint", str(work / "scenario.payload"), installed_env)
    again = run_command([sys.executable, "-m", "pyteleport", "resume", work / "scenario.payload.1"],
                        env=env, cwd=SCENARIOS)
    assert again.returncode == 0, again.stderr
    assert parse_output(again.stdout).lines == parse_output(first.steps[1].stdout).lines
