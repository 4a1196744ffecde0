"""Which live threads a move may leave behind.

A thread whose work is nothing but waiting, and that its library starts
again on demand, stays behind; everything else makes the move refuse:

- ``tqdm``'s monitor (``tqdm_monitor``): it only wakes up every
  ``monitor_interval`` seconds to refresh slow bars; on the target tqdm
  starts a new one with the next bar;
- idle workers of a ``concurrent.futures.ThreadPoolExecutor``: waiting for
  work in the pool's queue, with no work queued; the pool travels by value
  and starts as many workers again on the target (:mod:`.pools`);
- IPython's history-saving thread (``ipython script.py``): it writes the
  shell's input history, which stays with the shell; the target is a plain
  Python process.

The refusal names every other thread, where it is (``file:line, in
function``) and what to do.
"""
from __future__ import annotations

import sys
import time

from .._errors import TeleportError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import List, Optional

# a pool worker between two waits (it releases the pool's idle semaphore, in
# Python, before it blocks) is given this long to get back to its wait
_SETTLE_SECONDS = 0.05
_SETTLE_STEP = 0.002


def check_threads() -> None:
    """Raise TeleportError unless the caller is the main thread and every
    other live thread may be left behind."""
    threading = sys.modules.get("threading")
    if threading is None:
        return
    main = threading.main_thread()
    if threading.current_thread() is not main:
        raise TeleportError("teleport()/checkpoint() must be called from the main thread")
    deadline = None
    while True:
        others = [t for t in threading.enumerate() if t is not main and t.is_alive()]
        if not others:
            return
        frames = sys._current_frames()
        stuck = [t for t in others if not _may_stay(t, frames.get(t.ident))]
        if not stuck:
            return
        if deadline is None:
            deadline = time.monotonic() + _SETTLE_SECONDS
        if not all(_is_pool_worker(t) for t in stuck) or time.monotonic() > deadline:
            raise TeleportError(_refusal(stuck, frames))
        time.sleep(_SETTLE_STEP)


# (class, module) of library threads that stay behind (see above)
_LIBRARY_THREADS = frozenset({("TMonitor", "tqdm._monitor"),
                              ("HistorySavingThread", "IPython.core.history")})


def _may_stay(thread, frame) -> bool:
    kind = type(thread)
    if (kind.__name__, kind.__module__) in _LIBRARY_THREADS:
        return True
    if _is_pool_worker(thread):
        return _idle_worker(thread, frame)
    return False


def _worker_function():
    module = sys.modules.get("concurrent.futures.thread")
    return getattr(module, "_worker", None)


def _is_pool_worker(thread) -> bool:
    worker = _worker_function()
    return worker is not None and getattr(thread, "_target", None) is worker


def _idle_worker(thread, frame) -> bool:
    """Waiting in the pool's queue (its innermost Python frame is the
    worker loop itself, blocked in ``SimpleQueue.get``), nothing queued."""
    worker = _worker_function()
    if frame is None or frame.f_code is not worker.__code__:
        return False
    queue = next((a for a in getattr(thread, "_args", ()) if type(a).__name__ == "SimpleQueue"), None)
    return queue is not None and queue.empty()


def _refusal(threads: List, frames) -> str:
    parts = [f"{t.name!r} ({_where(frames.get(t.ident))})" for t in threads]
    what = "another live thread" if len(threads) == 1 else "other live threads"
    return (f"{what}: {', '.join(parts)}; threads cannot be moved yet (only tqdm's monitor "
            f"and idle ThreadPoolExecutor workers stay behind): end or join them before the call")


def _where(frame: Optional[object]) -> str:
    if frame is None:
        return "not running Python code"
    code = frame.f_code
    return f"at {code.co_filename}:{frame.f_lineno}, in {code.co_name}"
