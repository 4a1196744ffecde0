"""A move inside Python code that a method load runs: ``obj.name(...)``
where ``name`` is a property, a descriptor with ``__get__``, found by
``__getattr__``, or looked up through ``super()``.  The interpreter is in
the middle of the load (LOAD_ATTR / LOAD_METHOD / LOAD_SUPER_ATTR with its
method bit): the resumed frame gets the attribute's value as the load would
leave it, and the call after it runs with it.  One move per case."""
from _scenario import log, move, run_case


class Greeter:
    def __init__(self, name):
        self.name = name

    @property
    def greet(self):
        move()                        # inside the property, mid-load
        return lambda greeting: f"{greeting}, {self.name}"


class Bound:
    """A descriptor that binds a class to the instance (as simpy's BoundClass)."""

    def __init__(self, cls):
        self.cls = cls

    def __get__(self, obj, owner=None):
        move()
        return lambda *args: self.cls(obj, *args)


class Release:
    def __init__(self, resource, amount):
        self.resource, self.amount = resource, amount


class Resource:
    release = Bound(Release)

    def __init__(self):
        self.level = 10


class Lazy:
    def __getattr__(self, name):
        move()
        return lambda *args: (name, args)


class Base:
    @property
    def describe(self):
        move()
        return lambda: f"a {type(self).__name__}"


class Child(Base):
    def describe_once(self):
        return super().describe() + "!"


def case_property():
    g = Greeter("world")
    log(g.greet("hello"), [g.name] * 2)


def case_descriptor():
    r = Resource()
    done = r.release(3)
    log(type(done).__name__, done.resource is r, done.amount, r.level)


def case_getattr():
    lazy = Lazy()
    total = sum(range(5))
    log(lazy.anything(total, "x"), total)


def case_super():
    c = Child()
    out = []
    try:
        out = [c.describe_once()]
    finally:
        log("finally", out)


run_case(globals())
