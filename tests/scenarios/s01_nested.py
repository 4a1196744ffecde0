"""The canonical example: the move happens three Python frames deep."""
from _scenario import log, move


def c():
    result = "hello"
    log("c: before the move, result =", result)
    move()
    log("c: after the move, result =", result)
    return result + " world"


def b():
    return len(c()) + float("3.5")


def a():
    return 5 * (3 + b())


value = a()
assert value == 87.5, value
log("a() =", value)
