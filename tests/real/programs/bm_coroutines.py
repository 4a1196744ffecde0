"""
Benchmark for recursive coroutines.

Author: Kumar Aditya
"""

import pyperf


async def fibonacci(n: int) -> int:
    if n <= 1:
        return n
    return await fibonacci(n - 1) + await fibonacci(n - 2)


def bench_coroutines(loops: int) -> float:
    range_it = range(loops)
    t0 = pyperf.perf_counter()
    for _ in range_it:
        coro = fibonacci(25)
        try:
            while True:
                coro.send(None)
        except StopIteration:
            pass
    return pyperf.perf_counter() - t0


# --- adapted for pyteleport's real-program suite (not pyperformance's code):
# a fixed, reduced workload whose results are printed.
if __name__ == "__main__":
    for n in (21, 24, 25):
        coro = fibonacci(n)
        try:
            while True:
                coro.send(None)
        except StopIteration as stop:
            print("coroutines fibonacci", n, stop.value)
