"""Differential tests: every scenario must print the same lines and exit the same way
whether it never moves, teleports, or is checkpointed and resumed (see harness.py)."""

import re

import pytest

from harness import SCENARIOS, assert_differential, last_stderr_line


def cases(filename):
    """Case names of a multi-case scenario (its ``def case_NAME`` functions)."""
    text = (SCENARIOS / filename).read_text()
    names = re.findall(r"^def case_(\w+)\(", text, flags=re.M)
    assert names, filename
    return names


# scenario -> number of moves it makes
SINGLE = {
    "s01_nested": 1,
    "s02_locals_args": 2,
    "s03_closures": 1,
    "s08_handled_exception": 1,
    "s12_recursion": 1,
    "s13_globals": 1,
    "s14_identity": 1,
    "s20_numpy": 1,
    "s24_simpy": 1,
}


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_scenario(name):
    assert_differential(f"{name}.py", moves=SINGLE[name])


def test_nested_frames_result():
    results = assert_differential("s01_nested.py")
    for res in results.values():
        assert res.stdout.splitlines()[-1].endswith("] a() = 87.5")


@pytest.mark.parametrize("case", cases("s04_stack.py"))
def test_pending_stack_values(case):
    assert_differential("s04_stack.py", args=[case])


@pytest.mark.parametrize("case", cases("s05_loops.py"))
def test_loops(case):
    assert_differential("s05_loops.py", args=[case])


@pytest.mark.parametrize("case", cases("s06_try.py"))
def test_try_blocks(case):
    assert_differential("s06_try.py", args=[case])


@pytest.mark.parametrize("case", cases("s07_with.py"))
def test_with_blocks(case):
    assert_differential("s07_with.py", args=[case])


@pytest.mark.parametrize("case", cases("s09_generators.py"))
def test_generators(case):
    assert_differential("s09_generators.py", args=[case])


COROUTINE_MOVES = {"nested_await_move": 1, "scheduler": 2, "async_with_and_for": 1,
                   "try_and_throw": 1, "created_and_closed": 1, "generator_based_coroutine": 1}


def test_every_coroutine_case_is_listed():
    assert sorted(COROUTINE_MOVES) == sorted(cases("s28_coroutines.py"))


@pytest.mark.parametrize("case", sorted(COROUTINE_MOVES))
def test_coroutines(case):
    assert_differential("s28_coroutines.py", args=[case], moves=COROUTINE_MOVES[case])


@pytest.mark.parametrize("case", cases("s10_callables.py"))
def test_callables(case):
    assert_differential("s10_callables.py", args=[case])


def test_package_main_module():
    assert_differential(None, python_args=["-m", "scen_pkg"], args=["extra", "--flag=1"])


def test_package_submodule_as_main():
    assert_differential(None, python_args=["-m", "scen_pkg.mod"], args=["x"])


COMMAND_STRING = """\
import sys
from _scenario import log, move

def twice_plus_one(x):
    y = x * 2
    log("before the move", x, y)
    move()
    return y + 1

log("argv", sys.argv, __name__)
log("result", twice_plus_one(20))
log("end", sorted(k for k in globals() if not k.startswith("__")))
"""


def test_command_string():
    assert_differential(None, python_args=["-c", COMMAND_STRING], args=["one", "two"])


def test_recursion_depth_survives():
    results = assert_differential("s12_recursion.py")
    out = results["teleport"].stdout
    assert "after the move, frames: 201 trail length 201" in out


def test_process_context():
    assert_differential(
        "s15_process_context.py",
        args=["{tmp}", "alpha", "--beta=2"],
        extra_env={"SCENARIO_REMOVED_VAR": "must be gone after the move too"},
    )


def test_open_files():
    assert_differential("s16_files.py", args=["{tmp}"])


def test_files_open_for_writing():
    assert_differential("s22_write_files.py", args=["{tmp}"])


def test_two_moves_in_a_row():
    results = assert_differential(
        "s17_multi_move.py",
        moves=2,
        modes=("none", "teleport", "checkpoint", "teleport,checkpoint", "checkpoint,teleport"),
    )
    # teleport: A -> B -> C, checkpoint: source -> resume -> resume
    assert len(results["checkpoint"].steps) == 3
    assert len(results["teleport,checkpoint"].steps) == 2
    pids = set(re.findall(r"^\[(\d+)\]", results["teleport"].stdout, flags=re.M))
    assert len(pids) == 3, results["teleport"].describe()


EXIT_CASES = {
    "sys_exit": dict(returncode=3),
    "exit_message": dict(returncode=1, exception_line="fatal: configuration missing"),
    # Python < 3.11 prints "__main__.AppError", newer ones "AppError"
    "uncaught": dict(returncode=1, exception_line=True),
    "uncaught_builtin": dict(returncode=1, exception_line="KeyError: 'missing-key'"),
    "exit_in_finally": dict(returncode=4),
}


def test_exit_cases_cover_the_scenario():
    assert sorted(EXIT_CASES) == sorted(cases("s18_exit.py"))


@pytest.mark.parametrize("case", sorted(EXIT_CASES))
def test_exit_status(case):
    results = assert_differential("s18_exit.py", args=[case], **EXIT_CASES[case])
    if case.startswith("uncaught"):
        for mode, res in results.items():
            assert last_stderr_line(res.stderr).endswith(
                "AppError: bad thing 42" if case == "uncaught" else "KeyError: 'missing-key'"
            ), (mode, res.stderr)
            assert "Traceback (most recent call last)" in res.stderr, (mode, res.stderr)
            assert f"case_{case}" in res.stderr, (mode, res.stderr)


def test_stdin_after_the_move():
    assert_differential("s19_stdin.py", stdin="hello teleport\nsecond line\nthird line\n")


@pytest.mark.parametrize("case", cases("s21_edges.py"))
def test_edge_cases(case):
    assert_differential("s21_edges.py", args=[case])


@pytest.mark.parametrize("case", cases("s23_classes.py"))
def test_classes_by_value(case):
    assert_differential("s23_classes.py", args=[case])


@pytest.mark.parametrize("case", cases("s29_method_lookups.py"))
def test_moves_inside_a_method_lookup(case):
    assert_differential("s29_method_lookups.py", args=[case])


# cases of s23 and their number of moves
CELL_MOVES = {"shared_cells": 3, "move_inside_closure": 1, "comprehension_lambdas": 2,
              "inside_comprehension": 1, "captured_arguments": 3}


def test_cell_cases_cover_the_scenario():
    assert sorted(CELL_MOVES) == sorted(cases("s23_cells.py"))


@pytest.mark.parametrize("case", sorted(CELL_MOVES))
def test_closures_share_cells_across_moves(case):
    assert_differential("s23_cells.py", args=[case], moves=CELL_MOVES[case])


MODULE_LEVEL_CASES = {"comprehension": 2, "with_enter": 2, "generator_next": 1, "generator_send": 1,
                      "submodules": 2}


@pytest.mark.parametrize("case", sorted(MODULE_LEVEL_CASES))
def test_moves_from_module_level_code(case):
    assert_differential("s24_module_level.py", args=[case], moves=MODULE_LEVEL_CASES[case])


@pytest.mark.parametrize("case", cases("s25_drivers.py"))
def test_generators_driven_from_python_code(case):
    assert_differential("s25_drivers.py", args=[case], moves=None)


@pytest.mark.parametrize("case", cases("s26_itertools.py"))
def test_itertools_loops(case):
    assert_differential("s26_itertools.py", args=[case])


@pytest.mark.parametrize("case", cases("s27_threads.py"))
def test_threads_left_behind(case):
    assert_differential("s27_threads.py", args=[case])
