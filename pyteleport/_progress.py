"""A progress line on stderr for long transfers, shown only on a terminal."""
from __future__ import annotations

import sys
import time

THRESHOLD = 64 * 1024 * 1024


class Progress:
    def __init__(self, total: int, label: str, stream=None):
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = time.monotonic()
        self.last = 0.0
        self.enabled = total >= THRESHOLD and getattr(self.stream, "isatty", lambda: False)()

    def __call__(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.2 and self.done < self.total:
            return
        self.last = now
        self._show(now)

    def _show(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-6) / 2**20
        self.stream.write(f"\r{self.label}: {self.done / 2**20:,.0f} / {self.total / 2**20:,.0f} MiB "
                          f"({100 * self.done / self.total:.0f}%, {rate:,.0f} MiB/s)")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._show(time.monotonic())   # the final state, however the last update fell
            self.stream.write("\n")
            self.stream.flush()
