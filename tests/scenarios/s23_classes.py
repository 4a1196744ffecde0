"""Classes defined in the script travel by value, whatever refers back to
them: Enums (members stay the same objects), a class attribute holding an
instance of the class, dataclasses (frozen, slots), metaclasses, ABCs,
subclasses, __slots__, properties, class/static methods, namedtuples,
objects whose __setstate__ or __reduce__ use the script's globals; and
objects the C pickler refuses: bound methods whose name is not their
function's, _struct.Struct, re.Pattern/re.Match, json's C encoder and scanner, locks (held ones stay held);
TypeVars and Generic classes; a big bytes object shared by two references.  One move per case."""
import abc
import collections
import dataclasses
import enum
import functools
import re
import struct
import sys
import types
import typing

from _scenario import log, move, run_case


class Color(enum.Enum):
    RED = 1
    GREEN = 2
    VERDE = 2   # an alias

    def describe(self):
        return f"{self.name.lower()} ({self.value})"


class Perm(enum.IntFlag):
    R = 4
    W = 2
    X = 1


class Planet(enum.Enum):
    MERCURY = (3.303e+23, 2.4397e6)
    EARTH = (5.976e+24, 6.37814e6)

    def __init__(self, mass, radius):
        self.mass = mass
        self.radius = radius

    @property
    def gravity(self):
        return round(6.673e-11 * self.mass / (self.radius * self.radius), 3)


def case_enum():
    c = Color.RED
    favourite = {"colour": Color.GREEN}
    rw = Perm.R | Perm.W
    move()
    log(c, c is Color.RED, Color(1) is c, Color["RED"] is c, Color.VERDE is Color.GREEN)
    log(favourite["colour"] is Color.GREEN, c.describe(), list(Color), len(Color.__members__))
    log(isinstance(c, Color), type(c) is Color, sorted(m.name for m in Color))
    log(rw, rw == 6, Perm(6) == rw, Perm.R in rw, Perm.X in rw, int(rw))
    log(Planet.EARTH.gravity, Planet((3.303e+23, 2.4397e6)) is Planet.MERCURY, Planet.EARTH.mass)


class P:
    def __init__(self, x):
        self.x = x

    def __repr__(self):
        return f"P({self.x})"


P.ZERO = P(0)
P.UNIT = P(1)


class Strength:
    def __init__(self, level, name):
        self.level, self.name = level, name

    def weaker(self):
        return Strength.WEAKEST if self is not Strength.WEAKEST else self


Strength.REQUIRED = Strength(0, "required")
Strength.WEAKEST = Strength(6, "weakest")


def case_class_attr_instance():
    p = P(5)
    zero = P.ZERO
    w = Strength.REQUIRED
    move()
    log(p, P.ZERO, zero is P.ZERO, type(zero) is P, isinstance(p, P), P.UNIT.x)
    log(w is Strength.REQUIRED, w.weaker() is Strength.WEAKEST, w.weaker().name)


@dataclasses.dataclass
class Item:
    name: str
    price: float = 0.0
    tags: list = dataclasses.field(default_factory=list)


_SLOTS = {"slots": True} if sys.version_info >= (3, 10) else {}


@dataclasses.dataclass(frozen=True, order=True, **_SLOTS)
class Point:
    x: int
    y: int = 0

    def norm1(self):
        return abs(self.x) + abs(self.y)


def case_dataclasses():
    item = Item("pen", 1.5)
    pts = [Point(2, 3), Point(1, 1)]
    move()
    log(item, item == Item("pen", 1.5), dataclasses.asdict(item))
    log([f.name for f in dataclasses.fields(Item)], Item("x").tags, dataclasses.is_dataclass(item))
    log(sorted(pts), pts[0].norm1(), hash(pts[1]) == hash(Point(1, 1)), dataclasses.replace(pts[1], y=9))
    try:
        pts[0].x = 7
    except dataclasses.FrozenInstanceError as e:
        log("frozen:", type(e).__name__)


class Registry(type):
    classes = []

    def __new__(mcls, name, bases, ns):
        cls = super().__new__(mcls, name, bases, ns)
        mcls.classes.append(name)
        return cls

    def __call__(cls, *args):
        obj = super().__call__(*args)
        obj.made_by = "Registry"
        return obj


class Plugin(metaclass=Registry):
    def __init__(self, n):
        self.n = n

    def hello(self):
        return f"plugin {self.n}"


class SubPlugin(Plugin):
    def hello(self):
        return "sub " + super().hello()


class Shape(abc.ABC):
    @abc.abstractmethod
    def area(self):
        ...

    def describe(self):
        return f"{type(self).__name__} of area {self.area()}"


class Square(Shape):
    def __init__(self, side):
        self.side = side

    def area(self):
        return self.side ** 2


def case_metaclass_and_subclasses():
    s = SubPlugin(3)
    sq = Square(4)
    move()
    log(s.hello(), s.made_by, type(s).__mro__[1] is Plugin, isinstance(s, Plugin), type(Plugin).__name__)
    log(SubPlugin(1).made_by, sq.describe(), isinstance(sq, Shape), sorted(Shape.__abstractmethods__))
    try:
        Shape()
    except TypeError:
        log("Shape is still abstract")


class Slotted:
    __slots__ = ("a", "__b")

    def __init__(self, a, b):
        self.a = a
        self.__b = b

    @property
    def b(self):
        return self.__b

    @b.setter
    def b(self, value):
        self.__b = value * 10

    @classmethod
    def make(cls, a):
        return cls(a, a + 1)

    @staticmethod
    def twice(x):
        return 2 * x


def case_slots_properties_methods():
    s = Slotted.make(2)
    move()
    log(s.a, s.b, Slotted.twice(4), Slotted.make(7).b, hasattr(s, "__dict__"))
    s.b = 3
    log(s.b, type(Slotted.__dict__["make"]).__name__, type(Slotted.__dict__["twice"]).__name__)


Pair = collections.namedtuple("Pair", "left right")


class Employee(typing.NamedTuple):
    name: str
    rank: int = 3


def scale(x, factor):
    return x * factor


def case_namedtuples_and_partials():
    pair = Pair(1, 2)
    emp = Employee("ada")
    triple = functools.partial(scale, factor=3)
    ns = types.SimpleNamespace(a=1, pair=pair)
    move()
    log(pair, pair._replace(left=9), Pair._make([3, 4]), pair.right)
    log(emp, emp._asdict(), Employee("bob", 1) < emp, Employee._fields)
    log(triple(5), triple.func is scale, ns, ns.pair is pair)


UNITS = {"m": 1.0, "km": 1000.0}


def to_metres(value, unit):
    return value * UNITS[unit]


class Distance:
    """Its state is its value in the unit it was given in; __setstate__
    converts with a function of the script."""

    def __init__(self, value, unit):
        self.metres = to_metres(value, unit)
        self.unit = unit

    def __getstate__(self):
        return (self.metres / UNITS[self.unit], self.unit)

    def __setstate__(self, state):
        self.metres = to_metres(*state)
        self.unit = state[1]


class Ticket:
    """__reduce__ names a function of the script."""

    def __init__(self, n):
        self.n = n

    def __reduce__(self):
        return make_ticket, (self.n,)


def make_ticket(n):
    return Ticket(n)


def case_state_uses_main_globals():
    d = Distance(2, "km")
    t = Ticket(7)
    move()
    log(d.metres, d.unit, type(t).__name__, t.n)


class Counter:
    def __init__(self):
        self.count = 0

    def bump(self):
        self.count += 1
        return self.count


class Clock:
    """Like simpy.Environment: binds classes and methods as instance
    attributes, under names that are not theirs."""

    def __init__(self):
        self.counter = Counter()
        self.tick = self.counter.bump
        self.make = types.MethodType(Counter, self)   # bound under another name
        self.later = functools.partial(self.advance, 2)
        self.now = 0

    def advance(self, by):
        self.now += by
        return self.now


def case_bound_methods():
    clock = Clock()
    clock.tick()
    move()
    log(clock.tick(), clock.counter.count, clock.tick.__self__ is clock.counter)
    log(clock.later(), clock.later(), clock.now, type(clock.make.__func__).__name__)


def case_struct_and_regex():
    header = struct.Struct("<ihd")
    pat = re.compile(r"(?P<key>\w+)=(?P<value>\d+)", re.I)
    m = pat.search("  spaced key=42 rest")
    full = re.fullmatch(r"a|ab", "ab")
    move()
    log(header.format, header.size, header.unpack(header.pack(1, 2, 3.5)))
    log(pat.pattern, pat.flags & re.I != 0, pat.findall("a=1 b=2"))
    log(m.group("key"), m.span(), m.groupdict(), m.pos, m.string, full.group(), full.span())


def case_json_c_objects():
    import json
    import json.encoder
    decoder = json.JSONDecoder(parse_float=lambda text: "float " + text, strict=False)
    settings = json.JSONEncoder(sort_keys=True, allow_nan=False)   # as iterencode uses it
    markers = {}
    # what JSONEncoder.iterencode holds while it runs
    encode = json.encoder.c_make_encoder(markers, settings.default, json.encoder.encode_basestring_ascii,
                                         settings.indent, settings.key_separator, settings.item_separator,
                                         settings.sort_keys, settings.skipkeys, settings.allow_nan)
    move()
    log(decoder.decode('{"x": 1.25, "s": "tab\tin"}'), type(decoder.scan_once).__name__)
    log("".join(encode({"b": [1, "\u00e9"], "a": None}, 0)), encode.markers is markers)
    try:
        encode(float("nan"), 0)
        log("nan encoded")
    except ValueError as e:
        log("nan refused:", e)


class Link:
    def __init__(self, value, after=None):
        self.value = value
        self.after = after


@dataclasses.dataclass
class Cell:
    value: int
    after: "Cell | None" = None


def case_deep_linked_data():
    # deeper than any interpreter lets pickle recurse: the attributes of
    # plain objects follow the root in shallow batches
    head = None
    for i in range(20000):
        head = Link(i, head)
    cells = None
    for i in range(6000):
        cells = Cell(i, cells)
    by_node = {head: "head", head.after: "second"}
    move()
    total, count, node = 0, 0, head
    while node is not None:
        total, count, node = total + node.value, count + 1, node.after
    log("links", count, total, by_node[head], by_node[head.after])
    count, cell = 0, cells
    while cell is not None:
        count, cell = count + 1, cell.after
    log("cells", count, cells.value, cells == Cell(cells.value, cells.after))


def case_shared_bytes():
    big = bytes(range(256)) * 1024          # 256 KiB, sent out of band
    data = bytearray(b"x" * 200000)
    holder = {"payload": big, "again": big, "data": data}
    move()
    log(holder["payload"] is big, holder["again"] is big, holder["data"] is data, len(big), len(data))
    data[0] = ord("y")
    log(holder["data"][:3], big[:4])


T = typing.TypeVar("T")


class Box(typing.Generic[T]):
    def __init__(self, v: T):
        self.v = v


class Auto(enum.Enum):
    """Members made by a __new__ that numbers them."""

    def __new__(cls, label):
        obj = object.__new__(cls)
        obj._value_ = len(cls.__members__) + 1
        obj.label = label
        return obj

    FIRST = "first"
    SECOND = "second"


class Lazy:
    @functools.cached_property
    def heavy(self):
        return 42


def case_generics_locks_cached_property():
    import threading
    box = Box[int](3)
    lazy = Lazy()
    lazy.heavy
    lock, rlock = threading.Lock(), threading.RLock()
    with lock, rlock, rlock:
        move()
        log("held:", lock.locked(), rlock._is_owned())
    log(box.v, Box[int], typing.List[T], Box.__parameters__ == (T,), T.__name__)
    log(Auto(2) is Auto.SECOND, Auto.SECOND.label, Auto.FIRST.value, lazy.heavy, Lazy().heavy)
    log("free:", lock.locked(), rlock.acquire(blocking=False))


def case_local_class():
    class Node:
        def __init__(self, value, parent=None):
            self.value, self.parent = value, parent

    Node.ROOT = Node("root")
    leaf = Node("leaf", Node.ROOT)
    move()
    log(leaf.parent is Node.ROOT, type(leaf) is Node, Node.ROOT.value, Node.__qualname__)


run_case(globals())
