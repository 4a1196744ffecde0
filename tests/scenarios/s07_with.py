"""with blocks open at the move: __exit__ runs in the new process.

Run with one case name as argument.
"""
import contextlib

from _scenario import log, move, run_case


class CM:
    def __init__(self, name, suppress=False):
        self.name = name
        self.suppress = suppress
        self.entered = 0

    def __enter__(self):
        self.entered += 1
        log("enter", self.name)
        return self

    def __exit__(self, exc_type, exc, tb):
        log("exit", self.name, exc_type.__name__ if exc_type else None, exc)
        return self.suppress


@contextlib.contextmanager
def managed(tag):
    log("generator cm: setup", tag)
    try:
        yield tag.upper()
    except RuntimeError as exc:
        log("generator cm: handled", exc)
    finally:
        log("generator cm: teardown", tag)


def case_basic():
    with CM("basic") as cm:
        log("inside, entered =", cm.entered)
        move()
        log("inside after the move", cm.name)
    log("after the block")


def case_suppress():
    with CM("suppressing", suppress=True) as cm:
        move()
        raise ValueError("swallowed by __exit__")
    log("after the block, suppress =", cm.suppress)


def case_nested():
    with CM("outer") as a, CM("inner") as b:
        with CM("innermost"):
            move()
            log("names", a.name, b.name)
    log("after all blocks")


def case_contextmanager():
    with managed("gen") as value:
        log("got", value)
        move()
        raise RuntimeError("handled inside the generator")
    log("after the block")


def case_exit_sees_exception():
    try:
        with CM("propagating"):
            move()
            raise KeyError("k")
    except KeyError as exc:
        log("propagated", repr(exc))


if __name__ == "__main__":
    run_case(globals())
