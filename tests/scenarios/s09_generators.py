"""Generators: the move inside a running generator, yield from chains, suspended generators.

Run with one case name as argument.
"""
import inspect

from _scenario import log, move, run_case


def case_for_loop():
    def gen(limit):
        total = 0
        for i in range(limit):
            if i == 2:
                move()
            total += i
            yield i * 10, total

    for value in gen(5):
        log("got", value)


def case_yield_from():
    def inner():
        yield "inner-1"
        move()
        yield "inner-2"
        return "inner-result"

    def middle():
        result = yield from inner()
        log("middle received", result)
        yield "middle-1"
        return "middle-result"

    def outer():
        result = yield from middle()
        log("outer received", result)
        yield "outer-1"

    for value in outer():
        log("got", value)


def counter(start):
    n = start
    try:
        while True:
            yield n
            n += 1
    finally:
        log("counter finally", start, n)


def case_suspended():
    started = counter(10)
    log("started", next(started), next(started))
    fresh = counter(100)
    squares = (x * x for x in range(5))
    log("squares", next(squares))
    log("states", inspect.getgeneratorstate(started), inspect.getgeneratorstate(fresh))
    move()
    log("states", inspect.getgeneratorstate(started), inspect.getgeneratorstate(fresh))
    log("continue", next(started), next(started), next(fresh), next(squares), list(squares))
    started.close()
    fresh.close()
    log("closed", inspect.getgeneratorstate(started), inspect.getgeneratorstate(fresh))


def case_send():
    def averager():
        total = count = 0
        average = None
        while True:
            value = yield average
            total += value
            count += 1
            average = total / count

    avg = averager()
    next(avg)
    log("sent", avg.send(10), avg.send(20))
    move()
    log("sent", avg.send(30), avg.send(40))


def case_genexp():
    def step(x):
        if x == 2:
            move()
        return x * 3

    for value in (step(x) + 1 for x in range(4)):
        log("got", value)


if __name__ == "__main__":
    run_case(globals())
