"""Open files: a text file partially read before the move, the rest after; closed files stay closed.

Usage: s16_files.py TMPDIR
"""
import os
import sys

from _scenario import log, move

path = os.path.join(sys.argv[1], "data.txt")
with open(path, "w") as out:
    out.write("line 1\nline 2\nline 3\nline 4 \u00e9\n")

closed_early = open(path)
closed_early.close()


def read_around_the_move():
    binary = open(path, "rb")
    head = binary.read(3)
    with open(path, encoding="utf-8") as text:
        first = text.readline()
        second = text.readline()
        log("read two lines")
        move()
        log("read before:", repr(first), repr(second), head)
        rest = text.read()
        log("read after:", repr(rest))
        log("at end:", text.tell() == os.path.getsize(path), text.read() == "")
        log("name/mode:", text.name == path, text.mode, text.encoding)
    log("binary rest:", binary.read(4), binary.tell())
    binary.close()
    log("closed:", text.closed, binary.closed, closed_early.closed, type(closed_early).__name__)
    try:
        closed_early.read()
    except ValueError as exc:
        log("reading a closed file:", exc)


read_around_the_move()
