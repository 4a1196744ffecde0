"""Interpreter and process settings: recursion limit, switch interval, the
hooks in ``sys``, the integer string limit, ``os.umask``, the collector's
settings."""
import gc
import os
import sys

_HOOKS = ("excepthook", "unraisablehook", "displayhook", "breakpointhook")


def save():
    state = {"recursionlimit": sys.getrecursionlimit(),
             "switchinterval": sys.getswitchinterval(),
             "gc": (gc.isenabled(), gc.get_threshold())}
    for name in _HOOKS:
        hook = getattr(sys, name, None)
        if hook is not None and hook is not getattr(sys, f"__{name}__", None):
            state[name] = hook
    get_digits = getattr(sys, "get_int_max_str_digits", None)
    if get_digits is not None:
        state["int_max_str_digits"] = get_digits()
    mask = os.umask(0o022)
    os.umask(mask)
    state["umask"] = mask
    return state


def restore(state):
    sys.setrecursionlimit(state["recursionlimit"])
    sys.setswitchinterval(state["switchinterval"])
    enabled, threshold = state["gc"]
    gc.set_threshold(*threshold)
    (gc.enable if enabled else gc.disable)()
    for name in _HOOKS:
        if name in state:
            setattr(sys, name, state[name])
    if "int_max_str_digits" in state:
        sys.set_int_max_str_digits(state["int_max_str_digits"])
    os.umask(state["umask"])
