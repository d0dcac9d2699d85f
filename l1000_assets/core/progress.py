"""Progress and log callbacks for long work, and their throttled reporter.

Every long-running function in ``core`` takes ``log: Log`` (one message) and/or
``progress: Progress`` (``done, total, elapsed_seconds``); the assets and the CLI pass a
:class:`ProgressReporter` that turns the second into throttled log lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Log = Callable[[str], None]
"""Takes one human-readable message."""

Progress = Callable[[int, int, float], None]
"""Called as ``progress(done, total, elapsed_seconds)``; ``total`` 0 when unknown."""


class ProgressReporter:
    """Calls ``emit(message)`` at most every ``interval`` seconds, and at completion.

    Call the instance as ``reporter(done, total, elapsed_seconds)``; the message gives the
    count, percentage, rate and estimated time left.
    """

    def __init__(self, emit: Callable[[str], None], what: str = "profiles", interval: float = 5.0):
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
        self.emit(
            f"{done:,}/{total:,} {self.what} ({100 * done / total:.0f}%), "
            f"{rate:,.0f} {self.what}/s, ETA {eta:,.0f} s"
        )
