"""The move inside functions called in many ways: comprehensions, lambdas, decorators,
methods, properties, __init__ and operator methods.

Run with one case name as argument.
"""
import functools

from _scenario import log, move, run_case


def step(x):
    if x == 2:
        move()
    return x * 10


def case_listcomp():
    base = 1
    log([step(x) + base for x in range(4)])


def case_dictcomp():
    log({f"k{x}": step(x) for x in range(4)})


def case_setcomp():
    log(sorted({step(x) // 20 for x in range(4)}))


def case_nested_comprehension():
    log([[step(x + y) for y in range(2)] for x in range(2)])


def case_lambda():
    offset = 5
    fn = lambda v: step(v) + offset  # noqa: E731
    log(fn(1), fn(2), (lambda: step(3) * 2)())


def traced(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        log("calling", fn.__name__, args, kwargs)
        result = fn(*args, **kwargs)
        log("returned", result)
        return result

    return wrapper


@traced
def work(x, *, factor=2):
    """doc of work"""
    move()
    return x * factor


def case_decorator():
    log(work(21, factor=3), work.__name__, work.__doc__, work.__wrapped__.__name__)


class Thing:
    kind = "thing"

    def __init__(self, x):
        self.x = x

    def method(self, y):
        move()
        return self.x + y

    @classmethod
    def create(cls, x):
        move()
        return cls(x * 2)

    @staticmethod
    def helper(a, b):
        move()
        return a * b

    @property
    def doubled(self):
        move()
        return self.x * 2


class Moving:
    def __init__(self, x):
        self.x = x
        move()
        self.y = x * 2


class Vec:
    def __init__(self, *coords):
        self.coords = coords

    def __add__(self, other):
        move()
        return Vec(*(a + b for a, b in zip(self.coords, other.coords)))

    def __getitem__(self, index):
        move()
        return self.coords[index]

    def __call__(self, scale):
        move()
        return [c * scale for c in self.coords]

    def __repr__(self):
        return f"Vec{self.coords}"


def case_method():
    t = Thing(5)
    log(t.method(7), t.x)


def case_classmethod():
    t = Thing.create(4)
    log(type(t).__name__, t.x, t.kind)


def case_staticmethod():
    log(Thing.helper(6, 7))


def case_property():
    t = Thing(21)
    log(t.doubled + 1)


def case_init():
    obj = Moving(3)
    log(type(obj).__name__, obj.x, obj.y, isinstance(obj, Moving))


def case_add():
    v = Vec(1, 2) + Vec(10, 20)
    log(v, v.coords)


def case_getitem():
    v = Vec(4, 5, 6)
    log(v[1] + v.coords[2])


def case_call():
    v = Vec(1, 2, 3)
    log(v(10))


if __name__ == "__main__":
    run_case(globals())
