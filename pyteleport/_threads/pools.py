"""``concurrent.futures.ThreadPoolExecutor`` by value: its settings travel,
its threads, queue and locks are made anew on the target, where it starts
as many workers as it had (they wait for work, as they did here).  Only an
idle pool gets here: :mod:`.policy` refuses a move while a worker runs."""
from __future__ import annotations

import queue
import threading

# what the pool makes for its threads, made again on the target
_RUNTIME = ("_threads", "_work_queue", "_idle_semaphore", "_shutdown_lock")


def reduce_pool(pool):
    state = {k: v for k, v in vars(pool).items() if k not in _RUNTIME}
    started = sum(1 for t in pool._threads if t.is_alive())
    # how many workers it counts idle: a later submit() reuses one rather than
    # start one more (the thread names a program sees stay the same)
    idle = pool._idle_semaphore._value
    return new_pool, (type(pool),), (state, started, idle), None, None, set_pool_state


def new_pool(cls):
    return cls.__new__(cls)


def set_pool_state(pool, state) -> None:
    attrs, started, idle = state
    pool.__dict__.update(attrs)
    pool._threads = set()
    pool._work_queue = queue.SimpleQueue()
    pool._shutdown_lock = threading.Lock()
    # while the workers start, the pool must not take one of them for an
    # idle worker and start fewer (their own releases still count)
    pool._idle_semaphore = _Starting(0)
    if not pool._shutdown and not pool._broken:
        for _ in range(started):
            pool._adjust_thread_count()     # one new worker each, named as before
    pool._idle_semaphore.__class__ = threading.Semaphore
    # as idle as it was: a worker that counts itself idle whenever it finds
    # the queue empty (CPython gh-115634: 3.12.1+, 3.13) has done so once
    # already there, and does here as it starts
    more = max(0, idle - started) if _idle_when_queue_empty() else idle
    if more:
        pool._idle_semaphore.release(more)


def _idle_when_queue_empty() -> bool:
    from concurrent.futures import thread
    return "get_nowait" in thread._worker.__code__.co_names


class _Starting(threading.Semaphore):
    """The idle semaphore while the workers start: never acquired."""

    def acquire(self, blocking=True, timeout=None):
        return False
