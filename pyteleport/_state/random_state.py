"""``random``'s global generator (the one behind ``random.random()``,
``random.seed()`` and the other module functions)."""
import random
from array import array


def save():
    version, internal, gauss_next = random._inst.getstate()
    # 625 numbers below 2**32: an array pickles in a third of the size
    return version, array("I", internal), gauss_next


def restore(state):
    version, internal, gauss_next = state
    random._inst.setstate((version, tuple(internal), gauss_next))
