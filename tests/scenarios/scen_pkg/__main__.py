"""__main__ of a package: run as ``python -m scen_pkg extra args``."""
import sys

from _scenario import log, move

from . import GREETING
from .helpers import combine


def main():
    parts = [GREETING, combine(1, 2)]
    log("before:", __name__, __package__, __spec__.name)
    move()
    log("after:", __name__, __package__, __spec__.name)
    log("argv tail:", sys.argv[1:])
    from . import helpers  # relative import after the move

    log("parts:", parts, helpers.combine("x", "y"))
    log("main module is this one:", sys.modules["__main__"].main is main)


if __name__ == "__main__":
    main()
