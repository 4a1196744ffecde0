"""Threads a move may leave behind (pyteleport/_threads/policy.py): tqdm's
monitor thread, after a finished loop and with a bar live across the move,
and ThreadPoolExecutor pools, idle (they come back with as many workers,
named as before) or shut down.  One move per case."""
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from _scenario import log, move, run_case


def square(x):
    return x * x


def _workers():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("sq"))


def case_tqdm_finished():
    from tqdm import tqdm
    out = io.StringIO()
    total = 0
    for i in tqdm(range(50), file=out, mininterval=0):
        total += i
    log("looped", total, out.getvalue().count("50/50") > 0)
    move()
    log("after", total, threading.current_thread().name)
    for i in tqdm(range(5), file=out, mininterval=0):
        total += i
    log("looped again", total)


def case_tqdm_around():
    from tqdm import tqdm
    out = io.StringIO()
    bar = tqdm(total=10, file=out, mininterval=0, ascii=True, ncols=60)
    bar.update(4)
    move()
    bar.update(6)
    bar.close()
    log("bar", bar.n, bar.total, "10/10" in out.getvalue())


def case_idle_pool():
    pool = ThreadPoolExecutor(3, thread_name_prefix="sq")
    first = list(pool.map(square, range(6)))
    started = len(_workers())
    time.sleep(0.05)            # the workers are back waiting for work
    move()
    log("before", first, "workers back:", len(_workers()) == started, _workers() if len(_workers()) != started else "")
    log("after", list(pool.map(square, range(6, 12))), pool.submit(square, 12).result())
    pool.shutdown(wait=True)
    log("shut down", _workers())


def case_pool_with_initializer():
    seen = []
    pool = ThreadPoolExecutor(2, thread_name_prefix="sq", initializer=seen.append, initargs=("init",))
    log("first", pool.submit(square, 3).result())
    time.sleep(0.05)
    move()
    log("after", pool.submit(square, 4).result(), "initialised:", "init" in seen)
    pool.shutdown()


def case_shut_down_pool():
    pool = ThreadPoolExecutor(2, thread_name_prefix="sq")
    log("result", pool.submit(square, 7).result())
    pool.shutdown(wait=True)
    move()
    try:
        pool.submit(square, 8)
    except RuntimeError as e:
        log("refused after shutdown:", e)


if __name__ == "__main__":
    run_case(globals())
