"""itertools objects on CPython 3.14+, which no longer pickle them (gh-101588).

Only what Python code can observe is rebuilt: a ``count`` (its repr shows the
next value and the step) and a ``repeat`` (its element, the one object it
refers to, and how many times are left).  The state of the others (an
``islice``'s position, a ``cycle``'s pass, ...) lives in C fields Python cannot
read: they are refused with a message that names the type.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable


def reduce(obj, refuse: "Callable[[str], None]"):
    """The reduction of the itertools object ``obj``, or ``refuse(message)``."""
    name = type(obj).__name__
    if name == "count":
        args = _literal_args(repr(obj), name)
        if args is not None:
            return type(obj), args
    elif name == "repeat":
        import gc
        element = gc.get_referents(obj)
        if element and element[0] is type(obj):
            element = element[1:]   # a heap type: its instances refer to it
        if len(element) == 1:
            try:
                times = obj.__length_hint__()
            except TypeError:   # repeating forever
                return type(obj), (element[0],)
            return type(obj), (element[0], times)
    refuse(f"itertools.{name} objects cannot be moved on this Python (3.14+ no longer "
           f"exposes their state); only count() of numbers and repeat() can: build the "
           f"{name}() again after the move, or loop over a list or a generator instead")


def _literal_args(text: str, name: str):
    """``count(5, 2)`` -> (5, 2), when the arguments are plain literals."""
    if not (text.startswith(name + "(") and text.endswith(")")):
        return None
    import ast
    try:
        args = ast.literal_eval("(" + text[len(name) + 1:-1] + ",)")
    except (ValueError, SyntaxError):
        return None
    if all(type(a) in (int, float) for a in args):
        return args
    return None
