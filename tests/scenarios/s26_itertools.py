"""for loops over itertools objects across a move (3.14+ no longer pickles
them: pyteleport rebuilds those whose state Python can see), and iteration
state 3.15 keeps on the stack (a sequence and an index; generator expressions
not started yet).

Run with one case name as argument.
"""
import itertools

from _scenario import log, move, run_case


def case_count():
    for i in itertools.count(10):
        if i == 12:
            move()
        log("count", i)
        if i == 14:
            break


def case_count_step():
    c = itertools.count(0.5, -0.25)
    for x in c:
        if x == 0.0:
            move()
        log("count step", x)
        if x < -0.5:
            break
    log("next of the local", next(c))


def case_count_big():
    for i in itertools.count(2 ** 70, 3):
        move()
        log("count big", i)
        break


def case_repeat():
    item = ["shared"]
    seen = []
    for k, x in enumerate(itertools.repeat(item, 4)):
        if k == 1:
            move()
        seen.append(x)
        log("repeat", k, x)
    log("same object", all(x is seen[0] for x in seen))


def case_repeat_forever():
    for k, x in zip(range(3), itertools.repeat("r")):
        if k == 1:
            move()
        log("forever", k, x)


def case_sequences_and_genexps():
    fresh = (c * 2 for c in "xyz")
    pending = (n for n in range(3))
    for word in ("one", "two"):
        for ch in word:
            if (word, ch) == ("one", "n"):
                move()
            log("char", word, ch)
    log("genexps", list(fresh), next(pending), list(pending))


run_case(globals())
