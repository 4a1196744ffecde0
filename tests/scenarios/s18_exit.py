"""Exit status after the move. Run with one case name as argument."""
import sys

from _scenario import log, move, run_case


class AppError(Exception):
    pass


def case_sys_exit():
    code = 3
    move()
    log("exiting with", code)
    sys.exit(code)


def case_exit_message():
    reason = "fatal: configuration missing"
    move()
    log("exiting with a message")
    sys.exit(reason)


def case_uncaught():
    value = 7
    move()
    log("about to fail with value", value)
    raise AppError(f"bad thing {value * 6}")


def case_uncaught_builtin():
    data = {"present": 1}
    move()
    log("looking up a missing key")
    return data["missing-key"]


def case_exit_in_finally():
    try:
        move()
        log("in try")
    finally:
        log("finally decides the exit status")
        sys.exit(4)


if __name__ == "__main__":
    run_case(globals(), end='not reached')
