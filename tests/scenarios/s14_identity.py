"""Object identity and cycles are preserved across the move."""
from _scenario import log, move

shared_global = None


class Node:
    def __init__(self, name):
        self.name = name
        self.peer = None


def inner(lst, holder):
    log("before the move:", lst, sorted(holder))
    move()
    lst.append("appended in inner")
    log("inner: same object via global and holder:", lst is shared_global, lst is holder["ref"])
    return lst


def outer():
    global shared_global
    lst = [1, 2]
    shared_global = lst
    holder = {"ref": lst, "again": lst}
    selfref = {"name": "loop"}
    selfref["self"] = selfref
    looped = [0]
    looped.append(looped)
    a, b = Node("a"), Node("b")
    a.peer, b.peer = b, a
    result = inner(lst, holder)
    lst.append("appended in outer")
    log("outer sees:", shared_global, holder["again"])
    log("identity:", result is lst, holder["ref"] is holder["again"], shared_global is lst)
    log("self-referencing dict:", selfref["self"] is selfref, repr(selfref))
    log("self-referencing list:", looped[1] is looped, repr(looped))
    log("node cycle:", a.peer.peer is a, b.peer.name)
    shared_global.append("via global")
    log("seen via local:", lst[-1], len(holder["ref"]))


outer()
