"""Two moves in a row: A -> B -> C."""
from _scenario import log, move

history = []


def step(tag):
    history.append(tag)
    log("before", tag, history)
    move()
    log("after", tag, history)
    return len(history)


total = 0
for tag in ("first", "second"):
    total += step(tag)
    log("total", total)
log("history", history)
