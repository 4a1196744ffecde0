"""Module globals: __main__ functions/classes/instances, mutated class attributes,
and another user module whose attributes changed at run time."""
import helpermod
from _scenario import log, move


class Config:
    level = 1
    items = []


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm2(self):
        return self.x ** 2 + self.y ** 2

    def __repr__(self):
        return f"Point({self.x}, {self.y})"


def square(v):
    return v * v


Config.level = 5
Config.items.append("set before the move")
Config.added_later = "new class attribute"
helpermod.counter = 40
helpermod.bump()
helpermod.registry["key"] = "value"
helpermod.extra = helpermod.make("attached")
origin = Point(3, 4)
table = {"sq": square}


def main():
    global origin
    p = Point(1, 2)
    log("before the move:", p, origin, Config.level, helpermod.counter)
    move()
    log("instances:", p, origin, p.norm2(), origin.norm2(), isinstance(p, Point), type(origin) is Point)
    log("class attributes:", Config.level, Config.items, Config.added_later)
    log("helper module:", helpermod.counter, helpermod.registry, helpermod.extra, helpermod.bump())
    log("helper class identity:", type(helpermod.extra) is helpermod.Helper)
    log("functions:", table["sq"] is square, square(9))
    origin = Point(0, 0)
    Config.level += 1


main()
log("after main:", origin, Config.level, helpermod.counter)
late = [square(i) for i in range(4)]
log("defined after the move:", late)
