"""try/except/else/finally blocks open at the move.

Run with one case name as argument.
"""
import sys

from _scenario import log, move


def case_handler():
    try:
        log("in try")
        move()
        log("raising after the move")
        raise KeyError("boom")
    except KeyError as exc:
        log("caught by the original handler:", repr(exc))
    else:
        log("else must not run")
    finally:
        log("finally runs")
    return "done"


def case_else():
    try:
        value = 21
        move()
        value *= 2
    except Exception:
        log("except must not run")
    else:
        log("else runs", value)
    finally:
        log("finally runs", value)
    return value


def case_finally_return():
    steps = []
    try:
        steps.append("try")
        move()
        steps.append("after move")
        return steps
    finally:
        steps.append("finally")
        log("finally sees", steps)


def case_nested():
    try:
        try:
            log("inner try")
            move()
            {}["missing"]
        except ZeroDivisionError:
            log("wrong handler")
        finally:
            log("inner finally")
    except LookupError as exc:
        log("outer handler caught", type(exc).__name__, exc)
        return "outer"


def case_move_in_finally():
    try:
        try:
            raise OSError(5, "disk on fire")
        finally:
            log("finally with a pending exception")
            move()
            log("still pending after the move")
    except OSError as exc:
        log("propagated after finally:", exc.errno, exc.strerror)
    return "ok"


def case_move_in_except_then_finally():
    try:
        1 / 0
    except ZeroDivisionError as exc:
        log("handling", exc)
        move()
        log("still handling", type(exc).__name__)
    finally:
        log("finally after the handler")
    return "ok"


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    case = sys.argv[1]
    log("case", case)
    log("result", CASES[case]())
