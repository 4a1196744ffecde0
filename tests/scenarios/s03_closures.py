"""Cells shared with inner functions; nonlocal and global rebinding after the move."""
from _scenario import log, move

counter = 0


def set_counter(value):
    global counter
    counter = value


def outer(start):
    count = start
    shared = []

    def inc():
        nonlocal count
        count += 1
        shared.append(count)
        return count

    def get():
        return count, start, len(shared)

    inc()
    inc()
    set_counter(5)
    log("before:", count, get(), shared, counter)
    move()
    log("after the move:", count, get(), shared, counter)
    log("inner rebinding:", inc(), count, get())
    count = 100
    log("outer rebinding seen by the closure:", get(), inc(), count)
    set_counter(counter + 2)
    log("global rebinding:", counter)
    return inc, get


inc, get = outer(10)
log("closures returned:", inc(), get(), counter)
