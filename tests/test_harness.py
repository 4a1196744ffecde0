"""The differential oracle itself must reject runs in which nothing moved."""

import pytest

from harness import assert_differential, check_pids, parse_output


def test_pid_structure_of_a_real_move():
    parsed = parse_output("[10] a\n--move--\n[11] b\n[11] c\n")
    assert parsed.lines == ["a", "--move--", "b", "c"]
    assert parsed.markers == 1
    assert check_pids("teleport", parsed) is None
    assert check_pids("none", parsed) is not None


@pytest.mark.parametrize(
    "stdout",
    [
        "[10] a\n--move--\n[10] b\n",  # did not move
        "[10] a\n--move--\n[11] b\n[10] c\n",  # the old process printed after the move
        "[10] a\n--move--\n[11] b\n--move--\n[10] c\n",  # moved back to the first process
        "[10] a\n--move--\nb\n",  # a line without pid after the move
    ],
)
def test_pid_structure_rejected(stdout):
    assert check_pids("teleport", parse_output(stdout)) is not None


def test_reference_run_must_be_one_process():
    assert check_pids("none", parse_output("[10] a\n--move--\n[10] b\n")) is None
    assert check_pids("none", parse_output("[10] a\n--move--\n[11] b\n")) is not None


def test_a_mode_that_does_not_move_fails():
    # "none,none" is run and judged like a moving mode, but move() does nothing
    with pytest.raises(AssertionError, match="did not move"):
        assert_differential("s01_nested.py", modes=("none", "none,none"))
