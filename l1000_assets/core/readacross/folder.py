"""The watched queries folder: which files are new or changed since the last scan."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from l1000_assets.core.connectivity.gene_sets import is_gene_set_file
from l1000_assets.core.readacross.query_files import is_query_file


def file_fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def scan_queries(
    folder: str | Path,
    seen: dict[str, str],
    *,
    settle_seconds: float = 2.0,
    now: float | None = None,
    accept: Callable[[Path], bool] = is_query_file,
) -> tuple[list[Path], list[Path], dict[str, str]]:
    """Query files in ``folder`` (not recursive) that are new or changed since ``seen``
    (path -> size:mtime fingerprint), and files of other types; ``accept`` says which
    files are query files (default: profile files).

    Files modified in the last ``settle_seconds`` (still being copied) wait for the next
    scan. Returns ``(changed, unsupported, fingerprints)``: the fingerprints of every file
    handled now or before, to pass as ``seen`` next time (removed files drop out).
    """
    folder = Path(folder)
    now = time.time() if now is None else now
    changed, unsupported, current = [], [], {}
    if not folder.is_dir():
        return changed, unsupported, current
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        key = str(path.resolve())
        fingerprint = file_fingerprint(path)
        if now - path.stat().st_mtime < settle_seconds:
            if key in seen:
                current[key] = seen[key]
            continue
        current[key] = fingerprint
        if seen.get(key) == fingerprint:
            continue
        (changed if accept(path) else unsupported).append(path)
    return changed, unsupported, current


def queries_in(folder: str | Path) -> list[Path]:
    """Every profile query file in ``folder`` (sorted); gene-set files
    (:func:`~l1000_assets.core.connectivity.gene_sets.is_gene_set_file`) are left to the
    gene-set queries."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_query_file(p) and not is_gene_set_file(p))
