"""Cost of live threads at a move: pack() of a trivial program with 0, 1, 8
and 32 idle ThreadPoolExecutor workers and tqdm's monitor thread (the
threads a move leaves behind, pyteleport/_threads), each figure against the
no-thread pack() of the same run.  Run: python benchmarks/bench_threads.py"""
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pyteleport._core.pack

RUNS = 30


def pack_ms() -> float:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        pyteleport._core.pack.pack(sys._getframe(0), None)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def with_workers(n: int):
    pool = ThreadPoolExecutor(n)
    list(pool.map(abs, range(4 * n)))   # start every worker
    time.sleep(0.05)                      # all back waiting for work
    return pool


def main() -> None:
    pack_ms()   # warm the compile cache
    base = pack_ms()
    print(f"pack(), no other thread: {base:.2f} ms (median of {RUNS})")
    for n in (1, 8, 32):
        pool = with_workers(n)
        t = pack_ms()
        print(f"pack(), {n:2d} idle pool workers: {t:.2f} ms, {t / base:.2f}x, "
              f"{(t - base) / n * 1e3:.0f} us per thread")
        pool.shutdown()
    try:
        from tqdm import tqdm
    except ImportError:
        print("tqdm not installed: its monitor not measured")
        return
    for _ in tqdm(range(2), disable=False, file=open("/dev/null", "w")):
        pass
    t = pack_ms()
    print(f"pack(), tqdm's monitor running: {t:.2f} ms, {t / base:.2f}x")


if __name__ == "__main__":
    main()
