"""Generators driven from Python code in every way the language offers
(next(), gen.send(), gen.throw(), gen.__next__(), a bound send kept in a
variable, type(gen).send(gen, value)) with a move inside them, a scheduler
that sends into several generators (as simpy runs its processes), and moves
inside __enter__ of a with statement.  Run with one case name as argument."""
import contextlib

from _scenario import log, move, run_case


def echo(tag, moves_at):
    received = yield f"{tag} ready"
    n = 0
    while True:
        n += 1
        if n == moves_at:
            move()
        try:
            received = yield f"{tag} got {received!r} #{n}"
        except ValueError as e:
            log(tag, "caught", e)
            received = "after-throw"


def case_next():
    g = echo("next", 1)
    log(next(g))
    log(next(g), next(g))


def case_send():
    g = echo("send", 2)
    log(next(g))
    log(g.send("a"))
    log(g.send("b"))
    log(g.send("c"))


def case_throw():
    g = echo("throw", 3)
    log(next(g), g.send("a"), g.send("b"))

    def failing(tag, *, moves):
        try:
            yield tag
        except KeyError as e:
            log("handling", e)
            if moves:
                move()
            yield "handled"

    h = failing("f", moves=True)
    log(next(h))
    log(h.throw(KeyError("boom")))
    log(g.throw(ValueError("bad")))


def case_dunder_next():
    g = echo("dunder", 2)
    log(g.__next__(), g.__next__())
    log(g.__next__())


def case_bound_send():
    g = echo("bound", 2)
    send = g.send
    log(send(None), send(1))
    log(send(2), send(3))


def case_unbound_send():
    g = echo("unbound", 2)
    gtype = type(g)
    log(gtype.send(g, None), gtype.send(g, 1))
    log(gtype.send(g, 2))


def case_scheduler():
    def process(name, delays):
        total = 0
        for d in delays:
            got = yield d
            total += got
            if name == "b" and total > 5:
                move()
            log(name, "woke at", got, "total", total)
        return total

    queue = [(0, "a", process("a", [1, 4, 2])), (0, "b", process("b", [2, 2, 3]))]
    started = set()
    while queue:
        queue.sort(key=lambda item: (item[0], item[1]))
        now, name, proc = queue.pop(0)
        try:
            delay = proc.send(now) if name in started else next(proc)
            started.add(name)
            queue.append((now + delay, name, proc))
        except StopIteration as stop:
            log(name, "done", stop.value, "at", now)


def case_nested_generators():
    def inner():
        x = yield "inner"
        move()
        yield f"inner got {x}"

    def outer():
        g = inner()
        first = next(g)
        second = g.send("value")
        yield first, second

    for item in outer():
        log("item", item)


class Ctx:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        log("enter", self.name)
        move()
        return self

    def __exit__(self, *exc):
        log("exit", self.name, exc[0].__name__ if exc[0] else None)
        return False


def case_with_enter():
    log("before")
    try:
        with Ctx("a") as a, Ctx("b") as b:
            log("inside", a.name, b.name)
            raise RuntimeError("reaches the handler after __exit__")
    except RuntimeError as e:
        log("caught", e)
    log("after")


@contextlib.contextmanager
def managed(tag):
    log("setting up", tag)
    move()
    try:
        yield tag * 2
    finally:
        log("tearing down", tag)


def case_contextmanager():
    with managed("x") as value:
        log("inside", value)
    log("after")


if __name__ == "__main__":
    run_case(globals())
