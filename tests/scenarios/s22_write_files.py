"""Files open for writing: written before the move (some of it still in the
buffer), written after it, read back at the end; nothing lost, nothing doubled.

Usage: s22_write_files.py TMPDIR
"""
import os
import sys

from _scenario import log, move

tmp = sys.argv[1]
log_path = os.path.join(tmp, "run.log")
with open(log_path, "w") as f:
    f.write("an earlier run\n")


def write_around_the_move():
    journal = open(log_path, "a", encoding="utf-8")        # appended to
    report = open(os.path.join(tmp, "report.txt"), "w")     # written from the start
    blob = open(os.path.join(tmp, "blob.bin"), "wb")
    scratch = open(os.path.join(tmp, "scratch.txt"), "w+")  # written and read back
    sink = open(os.devnull, "w")
    journal.write("step 1 \u00e9\n")
    report.write("header\n")
    blob.write(b"\x00\x01\x02\x03" * 4)
    blob.seek(4)
    blob.write(b"XY")                    # in the middle: the position is what moves
    scratch.write("abc")
    sink.write("into the void")
    log("buffered, not flushed; positions", report.tell(), blob.tell(), scratch.tell())
    move()
    log("positions after", report.tell(), blob.tell(), scratch.tell())
    journal.write("step 2\n")
    report.write("body\n")
    blob.write(b"ZZ")
    scratch.write("def")
    scratch.seek(0)
    log("scratch reads", repr(scratch.read()))
    sink.write("still void")
    log("modes", journal.mode, report.mode, blob.mode, scratch.mode)
    log("names", [os.path.basename(f.name) for f in (journal, report, blob, scratch)])
    for f in (journal, report, blob, scratch, sink):
        f.close()


write_around_the_move()
for name in ("run.log", "report.txt", "blob.bin", "scratch.txt"):
    with open(os.path.join(tmp, name), "rb") as f:
        log(name, f.read())
