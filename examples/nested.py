"""The canonical example: a call deep inside nested functions moves the program
to a new process; everything after it runs there."""
import os

import pyteleport


def log(*args):
    print(f"[pid {os.getpid()}]", *args, flush=True)


def a():
    def b():
        def c():
            result = "hello"
            log("before teleport, result =", repr(result))
            pyteleport.teleport()            # backend="local" is the default
            log("after teleport, result =", repr(result))
            return result + " world"
        return len(c()) + float("3.5")
    return 5 * (3 + b())


value = a()
assert value == 87.5
log("a() =", value)
