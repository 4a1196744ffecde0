"""A plain module of a package run as ``python -m scen_pkg.mod``."""
import sys

from _scenario import log, move

from scen_pkg.helpers import combine

STATE = {"runs": 0}


def work(n):
    STATE["runs"] += 1
    total = sum(range(n))
    move()
    return combine(total, STATE["runs"])


if __name__ == "__main__":
    log("module:", __name__, __spec__.name, __package__)
    log("result:", work(10))
    log("after:", __name__, __spec__.name, __package__, sys.argv[1:])
