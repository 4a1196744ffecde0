"""Closures sharing cells across several moves (A -> B -> C -> D), closures made
before and after each move, and comprehensions whose lambdas capture the loop
variable (3.12+ inline those comprehensions: their variable is a cell of the
enclosing frame).  Run with one case name as argument."""
from _scenario import log, move, run_case


def case_shared_cells():
    count = 0
    shared = []

    def inc():
        nonlocal count
        count += 1
        return count

    def peek():
        return count, len(shared)

    log("A", inc(), peek())
    move()

    def late():
        nonlocal count
        count += 10
        shared.append(count)
        return count

    log("B", inc(), late(), peek())
    move()

    def later():
        return inc() + late()

    log("C", later(), peek(), inc())
    move()
    log("D", inc(), late(), later(), peek(), shared)


def make_counter():
    n = 0

    def bump(by):
        nonlocal n
        n += by
        if n == 3:
            move()   # inside a closure that both reads and writes its free variable
        return n

    return bump


def case_move_inside_closure():
    bump = make_counter()
    log("bumps", [bump(1) for _ in range(5)])
    log("again", bump(10))


def case_comprehension_lambdas():
    fs = [lambda: x for x in range(3)]
    log("A", [f() for f in fs])
    move()
    gs = [lambda: y * 2 for y in range(3)]
    hs = [(lambda: z) for z in "ab"]
    log("B", [f() for f in fs], [g() for g in gs], [h() for h in hs])
    move()
    ks = [lambda: y * 3 for y in range(3)]
    log("C", [f() for f in fs], [g() for g in gs], [k() for k in ks])


def moving(i):
    if i == 1:
        move()
    return i


def case_inside_comprehension():
    x = "outer"
    keep = lambda: x
    fs = [(lambda: x * 10, moving(x))[0] for x in range(3)]
    log("A", [f() for f in fs], keep(), x)
    x = "changed"
    log("B", keep())


def captured_arguments(a, *rest, scale=2, **options):
    """Arguments that closures capture (3.11+: the argument's slot holds its
    cell), closures made only after the move."""
    log("A", a, rest, scale, sorted(options))
    move()
    twice = lambda: a * scale
    spread = [x * scale for x in (a + r for r in rest)]
    lazy = (option + str(a) for option in options)
    log("B", twice(), spread, sorted(lazy), (lambda: rest)())
    a += 1
    move()
    log("C", twice(), [f() for f in [lambda: a + len(rest)]], sorted(options.keys()))
    return twice


class Base:
    def total(self, n):
        return n


class Derived(Base):
    def total(self, n):
        move()
        return super().total(n) + (lambda: self.offset)()   # __class__ and self are cells

    offset = 7


def case_captured_arguments():
    twice = captured_arguments(3, 4, 5, scale=3, verbose=True, dry=False)
    log("D", twice(), Derived().total(5))


if __name__ == "__main__":
    run_case(globals())
