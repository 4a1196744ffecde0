"""Edge cases of resuming: zero-argument super() with a captured self, a
property setter, __setitem__, chained comparisons, keyword-only arguments,
break/continue/else, return inside finally, match (3.10+), a suspended
generator inside a with block, a format spec, C types held in variables
(weakref.ReferenceType, types.FunctionType: their own names find nothing).
One move per case."""
import sys

from _scenario import log, move, run_case


def moved(value=5):
    move()
    return value


class Base:
    def hello(self, x):
        return f"base {x}"


class Child(Base):
    def hello(self, x):
        def captured():
            return self           # makes `self` a cell variable
        moved()
        return super().hello(x) + " child " + str(captured() is self)

    @property
    def p(self):
        return self._p

    @p.setter
    def p(self, value):
        moved()
        self._p = value * 2


class Store:
    def __init__(self):
        self.d = {}

    def __setitem__(self, key, value):
        moved()
        self.d[key] = value


def case_super_with_cell_self():
    log(Child().hello(1))


def case_property_setter():
    c = Child()
    c.p = 4
    log(c.p)


def case_setitem():
    s = Store()
    s["a"] = 1
    log(s.d)


def case_chained_comparison():
    log(1 < moved() < 10, "and", 1 < 7 < 3)


def case_keyword_only():
    def kw(a, *, b=0, c=0):
        return a, b, c
    log(kw(1, b=2, c=moved()))


def case_break_continue_else():
    out = []
    for i in range(10):
        if i % 2:
            continue
        if i == 6:
            moved()
        if i == 8:
            break
        out.append(i)
    else:
        out.append("else")
    log(out)


def case_return_in_finally():
    def f():
        try:
            try:
                return "from try"
            finally:
                moved()
                log("inner finally")
        finally:
            log("outer finally")
    log(f())


def case_match():
    if sys.version_info >= (3, 10):
        from s21_match import classify
    else:
        def classify(v):
            if isinstance(v, list) and len(v) == 2 and moved() == 5:
                return ("pair", v[0], v[1])
            return "other"
    log(classify([1, 2]), classify("x"))


class Tracker:
    def __enter__(self):
        log("enter")
        return self

    def __exit__(self, *exc):
        log("exit", exc[0])
        return False


def case_suspended_generator_in_with():
    def gen():
        with Tracker():
            yield 1
            yield 2
    g = gen()
    log(next(g))
    move()
    g.close()
    log("closed")


def case_format_spec():
    log(f"[{'x':>{moved()}}]")


def case_c_types_held():
    # what copy.deepcopy holds while it runs (cls = type(x)): C types whose
    # own names find nothing (builtins.weakref, builtins.function, ...)
    import types
    import weakref

    class Target:
        pass

    t = Target()
    kinds = [type(weakref.ref(t)), weakref.ProxyType, types.FunctionType, types.MappingProxyType,
             types.GeneratorType, types.BuiltinFunctionType, type(len), types.CellType]
    cls = type(weakref.ref(t))
    import json.encoder
    encoder = json.encoder.c_make_encoder     # 3.9: _json.Encoder, a C type made at run time
    move()
    log(encoder is json.encoder.c_make_encoder)
    log(cls is weakref.ReferenceType, kinds[0] is weakref.ref, kinds[1] is weakref.ProxyType,
        kinds[2] is types.FunctionType, kinds[3] is types.MappingProxyType, kinds[4] is types.GeneratorType,
        kinds[5] is kinds[6], kinds[7] is types.CellType, [k.__name__ for k in kinds])


if __name__ == "__main__":
    run_case(globals())
