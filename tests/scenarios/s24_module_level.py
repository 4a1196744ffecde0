"""Moves from code running at module level: a comprehension whose lambdas
capture its variable, teleport() inside __enter__ of a with statement, a
generator driven by next() and by send(), submodules a program imported
(``import a.b`` then ``a.b.f()``, at module level and in a function).  Run with one case name as argument."""
import sys

from _scenario import log, move

CASE = sys.argv[1]
log("case", CASE)


def moving(i):
    if i == 1:
        move()
    return i


class Ctx:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        log("enter", self.name)
        move()
        return self.name.upper()

    def __exit__(self, *exc):
        log("exit", self.name, exc[0].__name__ if exc[0] else None)
        return exc[0] is KeyError


if CASE == "comprehension":
    fs = [(lambda: x * 10, moving(x))[0] for x in range(3)]
    log("A", [f() for f in fs])
    gs = [lambda: y for y in "ab"]
    log("B", [g() for g in gs])
    move()
    hs = [lambda: y for y in "cd"]
    log("C", [f() for f in fs], [g() for g in gs], [h() for h in hs])

elif CASE == "with_enter":
    with Ctx("outer") as name:
        log("inside", name)
        with Ctx("inner") as other:
            log("inside", name, other)
            raise KeyError("swallowed by __exit__")
    log("after", name)

elif CASE == "generator_next":
    def gen():
        log("gen starts")
        move()
        yield 1
        yield 2

    g = gen()
    log("got", next(g))
    log("got", next(g), next(g, "default"))

elif CASE == "generator_send":
    def proc():
        x = yield "start"
        log("received", x)
        move()
        y = yield x * 2
        log("received", y)
        return "finished"

    g = proc()
    log("first", next(g))
    log("sent", g.send(21))
    try:
        g.send("last")
    except StopIteration as stop:
        log("stopped", stop.value)

elif CASE == "submodules":
    import xml.etree.ElementTree
    import email.mime.text
    move()
    log("etree", xml.etree.ElementTree.fromstring("<a><b/></a>")[0].tag)
    log("mime", email.mime.text.MIMEText("hi")["Content-Type"])

    def local_package():
        import email.headerregistry
        move()
        return str(email.headerregistry.Address("Ann", "ann", "example.org"))

    log("headerregistry", local_package())

log("end")
