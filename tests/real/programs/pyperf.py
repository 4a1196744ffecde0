"""A stand-in for pyperf (written for pyteleport's tests, not pyperf's code):
only what the vendored benchmark bodies use, each benchmark run once."""
import time

perf_counter = time.perf_counter


class Runner:
    def __init__(self, *args, **kwargs):
        self.metadata = {}

    def bench_func(self, name, func, *args):
        return func(*args)
