"""Throttled progress reporting for long loops (used by the CLI and the assets)."""

from __future__ import annotations

import time
from collections.abc import Callable


class ProgressReporter:
    """Calls ``emit(message)`` at most every ``interval`` seconds, and at completion.

    Call the instance as ``reporter(done, total, elapsed_seconds)``; the message gives the
    count, percentage, rate and estimated time left.
    """

    def __init__(self, emit: Callable[[str], None], what: str = "profiles",
                 interval: float = 5.0):
        self.emit = emit
        self.what = what
        self.interval = interval
        self._last = -float("inf")

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        now = time.monotonic()
        finished = total > 0 and done >= total  # total 0: size unknown, keep throttling
        if not finished and now - self._last < self.interval:
            return
        self._last = now
        rate = done / elapsed if elapsed > 0 else 0.0
        if total <= 0:
            self.emit(f"{done:,} {self.what}, {rate:,.0f} {self.what}/s")
            return
        eta = (total - done) / rate if rate > 0 else float("nan")
        self.emit(f"{done:,}/{total:,} {self.what} ({100 * done / total:.0f}%), "
                  f"{rate:,.0f} {self.what}/s, ETA {eta:,.0f} s")
