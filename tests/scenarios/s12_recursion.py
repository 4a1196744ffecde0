"""Recursion 200 frames deep with the move at the bottom."""
import sys

from _scenario import log, move

DEPTH = 200


def depth_of_down():
    frame, n = sys._getframe(), 0
    while frame is not None:
        n += frame.f_code.co_name == "down"
        frame = frame.f_back
    return n


def down(n, trail):
    trail.append(n)
    if n == 0:
        log("bottom reached, frames:", depth_of_down())
        move()
        log("after the move, frames:", depth_of_down(), "trail length", len(trail))
        return 0
    local = n * 3
    below = down(n - 1, trail)
    if n % 50 == 0:
        log("unwinding", n, below)
    return below + local + n % 7


log("result", down(DEPTH, []))
