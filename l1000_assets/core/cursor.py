"""Sensor cursors as JSON objects, read leniently: an empty or unreadable cursor starts afresh."""

from __future__ import annotations

import json
from typing import Any


def load_cursor(raw: str | None) -> dict[str, Any]:
    """The cursor's JSON object; ``{}`` when it is empty, not JSON or not an object."""
    if not raw:
        return {}
    try:
        state = json.loads(raw)
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def dump_cursor(state: dict[str, Any]) -> str:
    """The cursor as JSON, keys sorted (equal states give equal cursors)."""
    return json.dumps(state, sort_keys=True)
