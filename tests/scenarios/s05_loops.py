"""Loops with the move at the middle iteration; every iteration prints.

Run with one case name as argument.
"""
import sys

from _scenario import log, move


def numbers():
    n = 0
    while n < 5:
        yield n * n
        n += 1


def case_range():
    total = 0
    for i in range(5):
        if i == 2:
            move()
        total += i
        log("range", i, total)
    return total


def case_list():
    out = []
    for s in ["a", "b", "c", "d", "e"]:
        if s == "c":
            move()
        out.append(s.upper())
        log("list", s, out)
    return out


def case_tuple():
    pos = 0
    for item in ("x", 1, 2.5, None, b"z"):
        if pos == 2:
            move()
        log("tuple", pos, repr(item))
        pos += 1


def case_dict_items():
    d = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
    acc = 0
    for k, v in d.items():
        if k == "three":
            move()
        acc += v
        log("dict", k, v, acc)
    return acc


def case_enumerate():
    for i, ch in enumerate("hello", start=10):
        if i == 12:
            move()
        log("enumerate", i, ch)


def case_zip():
    for a, b, c in zip(range(5), "vwxyz", [1.5, 2.5, 3.5, 4.5, 5.5, 6.5]):
        if a == 2:
            move()
        log("zip", a, b, c)


def case_generator():
    for sq in numbers():
        if sq == 4:
            move()
        log("generator", sq)


def case_while():
    i, acc = 0, []
    while i < 5:
        if i == 2:
            move()
        acc.append(i * 3)
        log("while", i, acc)
        i += 1
    return acc


def case_nested():
    grid = []
    for i in range(3):
        row = []
        for j in "abc":
            if (i, j) == (1, "b"):
                move()
            row.append(f"{i}{j}")
            log("nested", i, j)
        grid.append(row)
    return grid


def case_break_continue():
    seen = []
    for i in range(10):
        if i % 2:
            continue
        if i == 4:
            move()
        if i == 8:
            break
        seen.append(i)
        log("loop", i, seen)
    else:
        log("else must not run")
    return seen


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    case = sys.argv[1]
    log("case", case)
    log("result", CASES[case]())
