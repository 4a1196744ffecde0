"""Reading stdin after the move."""
import sys

from _scenario import log, move


def main():
    prompt = "waiting for input"
    log(prompt)
    move()
    line = sys.stdin.readline()
    log("first line:", repr(line))
    rest = sys.stdin.read()
    log("rest:", repr(rest))
    log("eof:", sys.stdin.read() == "")


main()
