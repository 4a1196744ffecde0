"""Coroutines without an event loop: the move inside a running await chain
driven by send(), coroutines suspended in a hand-written scheduler, async
with / async for, try blocks, throw(), created and closed coroutines held in
variables.  Run with one case name as argument."""
import types

from _scenario import log, move, run_case


class Tick:
    """An awaitable that suspends its coroutine once (a scheduler's step)."""

    def __init__(self, label):
        self.label = label

    def __await__(self):
        sent = yield self.label
        return sent


def drive(coro, values=()):
    """Run ``coro`` by hand: send None, then each value; the coroutine's result."""
    sent = None
    values = list(values)
    while True:
        try:
            yielded = coro.send(sent)
        except StopIteration as stop:
            return stop.value
        log("yielded", yielded)
        sent = values.pop(0) if values else None


def case_nested_await_move():
    async def leaf(n):
        total = 0
        for i in range(n):
            total += i * i
            if i == 2:
                move()          # three awaits deep, the chain driven by send()
            log("leaf", i, total)
        return total

    async def middle(n):
        first = await leaf(n)
        return first + await leaf(2)

    async def top():
        got = await middle(5)
        log("middle gave", got)
        return got * 10

    log("result", drive(top()))


def case_scheduler():
    async def worker(name, n):
        seen = []
        for i in range(n):
            seen.append(await Tick(f"{name}{i}"))
        return name, seen

    async def pair():
        a = await worker("a", 2)
        b = await worker("b", 3)
        return [a, b]

    tasks = [pair(), worker("y", 4), worker("z", 1)]
    results = []
    tick = 0
    while tasks:
        for task in list(tasks):
            try:
                log("step", task.send(tick or None))
            except StopIteration as stop:
                results.append(stop.value)
                tasks.remove(task)
        tick += 1
        if tick in (2, 4):
            move()              # every task suspended, held in a list
    log("results", results)


class Resource:
    def __init__(self, name):
        self.name = name

    async def __aenter__(self):
        log("enter", self.name, await Tick("enter"))
        return self

    async def __aexit__(self, kind, value, tb):
        log("exit", self.name, kind.__name__ if kind else None, await Tick("exit"))
        return kind is KeyError      # swallows KeyError only


class Countdown:
    def __init__(self, n):
        self.n = n

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.n == 0:
            raise StopAsyncIteration
        self.n -= 1
        await Tick(f"count{self.n}")
        return self.n


def case_async_with_and_for():
    async def body():
        async with Resource("outer") as r:
            async for k in Countdown(4):
                if k == 2:
                    move()      # inside async for, inside async with
                log("k", k, r.name)
            async with Resource("inner"):
                raise KeyError("swallowed")
        return "body done"

    log("result", drive(body(), values=range(100, 200)))


def case_try_and_throw():
    async def careful():
        caught = []
        for i in range(4):
            try:
                got = await Tick(i)
                log("got", i, got)
            except ValueError as e:
                caught.append(str(e))
                log("caught", e)
            finally:
                log("finally", i)
        return caught

    coro = careful()
    log("first", coro.send(None))
    log("second", coro.send("a"))
    move()                      # suspended inside try/finally
    log("thrown", coro.throw(ValueError("after the move")))
    log("third", coro.send("b"))
    try:
        coro.send("c")
    except StopIteration as stop:
        log("result", stop.value)


def case_created_and_closed():
    async def simple(x):
        return x * 3

    created = simple(7)
    finished = simple(1)
    try:
        finished.send(None)
    except StopIteration as stop:
        log("finished", stop.value)
    move()
    log("created runs", drive(created))
    try:
        finished.send(None)
    except RuntimeError as e:
        log("finished again", type(e).__name__, e)


@types.coroutine
def legacy(n):
    """A generator-based coroutine (types.coroutine), awaited by a native one."""
    got = yield f"legacy{n}"
    return got


def case_generator_based_coroutine():
    async def mixed():
        a = await legacy(1)
        move()
        b = await legacy(2)
        return a, b

    log("result", drive(mixed(), values=["x", "y"]))


if __name__ == "__main__":
    run_case(globals())
