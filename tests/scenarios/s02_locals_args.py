"""Locals and every kind of argument survive the move; a deleted local stays unbound."""
from _scenario import log, move


def target(p1, p2="p2-default", *args, kw1, kw2="kw2-default", **kwargs):
    number = 42
    big = 2 ** 100 + 7
    third = 1.0 / 3
    text = "text with unicode: \u00e9\u4e2d"
    raw = b"\x00\xffbytes"
    cplx = 1 + 2j
    nested = [1, (2.5, None, True), {"k": [3, 4]}]
    frozen = frozenset({3, 1, 2})
    nothing = None
    gone = "deleted before the move"
    del gone
    log("before:", p1, p2, args, kw1, kw2, sorted(kwargs.items()))
    move()
    log("positional:", p1, p2, args)
    log("keyword-only:", kw1, kw2)
    log("kwargs:", sorted(kwargs.items()))
    log("locals:", number, big, repr(third), text, raw, cplx, nested, sorted(frozen), nothing)
    log("bound names:", sorted(locals()))
    try:
        gone
    except NameError as exc:
        log("gone is unbound:", type(exc).__name__)
    gone = "rebound after the move"
    log("gone:", gone)
    return number + len(args) + len(kwargs)


log("returned", target("P1", 2, 3, 4, kw1="K1", extra=5, more=[6, 7]))
log("returned", target("Q1", kw1="K2", kw2="K3"))
