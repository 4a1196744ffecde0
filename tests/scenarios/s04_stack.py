"""The move happens inside an expression: values already on the evaluation stack must survive.

Run with one case name as argument.
"""
import sys

from _scenario import log, move

calls = []


def mv(value):
    move()
    return value


def g(tag="g"):
    calls.append(tag)
    log("evaluated", tag)
    return tag


def f(*args, **kwargs):
    return args, sorted(kwargs.items())


class Acc:
    def __init__(self, base):
        self.base = base

    def method(self, a, b, *, scale=1):
        return (self.base + a + b) * scale


def b():
    return len(g("b-arg")) + mv(10)


def case_call_args():
    log("result", f(1, g(), mv(3), 4))


def case_kwargs():
    log("result", f(1, b=g(), c=mv(3), d=4))


def case_star_args():
    log("result", f(*[1, 2], g(), *mv([3, 4]), 5, **{"k": g("k")}, **{"m": 6}))


def case_method():
    obj = Acc(100)
    log("result", obj.method(5, mv(7), scale=g("s") and 2))


def case_fstring():
    x, z = 1.5, "zed"
    log(f"x={x:.2f} y={mv('why')!r} z={z:>5} g={g()}")


def case_compare():
    log("chained", g() == "g" != "h", 1 < mv(2) < 3, "x" in ["x", "y"])


def case_return_expr():
    def a():
        return 5 * (3 + b())
    log("result", a())


def case_list_display():
    log("result", [1, g(), mv(3), *range(2), 5])


def case_dict_display():
    log("result", {"a": 1, "b": g(), "c": mv(3), **{"d": 4}, "e": 5})


def case_tuple_display():
    log("result", (1, g(), mv(3), 4))


def case_set_display():
    log("result", sorted({1, 2, mv(3), 4}))


def case_binop():
    log("result", 10 - 2 * (len(g()) + mv(5)) ** 2 // 3)


def case_subscript():
    table = {"g": {"k": [10, 20, 30]}}
    log("result", table[g()][mv("k")][1])


def case_augmented():
    box = [1, 2]
    box[g() and 1] += mv(40)
    log("result", box)


def case_unpack():
    a, (b_, *rest) = 1, mv((2, 3, 4))
    log("result", a, b_, rest)


def case_boolop():
    log("result", g() and mv(0) or "fallback", None or "second")


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}

if __name__ == "__main__":
    case = sys.argv[1]
    log("case", case)
    CASES[case]()
    log("calls", calls)
