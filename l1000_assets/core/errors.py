"""Errors raised on bad input. Each names the file and the problem."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class L1000InputError(ValueError):
    """Bad input: a missing, truncated or inconsistent release file.

    The message always starts with the offending path so a user can act on it.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def preview_ids(ids: Iterable[object], limit: int = 5) -> str:
    """A short, readable sample of offending ids: ``'a', 'b', 'c' (and 7 more)``."""
    ids = list(ids)
    shown = ", ".join(repr(str(i)) for i in ids[:limit])
    more = len(ids) - limit
    return shown + (f" (and {more} more)" if more > 0 else "")
