"""File digests: one streamed read per file, for any set of hashlib algorithms."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

CHUNK_BYTES = 1 << 20


def file_digests(
    path: str | Path, algorithms: Iterable[str], *, chunk_size: int = CHUNK_BYTES
) -> dict[str, str]:
    """Hex digests of the whole file for each algorithm (``sha256``, ``sha512``...), read once."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    if hashers:
        with open(path, "rb") as f:
            while chunk := f.read(chunk_size):
                for hasher in hashers.values():
                    hasher.update(chunk)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def sha256_file(path: str | Path) -> str:
    """SHA-256 of the whole file."""
    return file_digests(path, ["sha256"])["sha256"]
