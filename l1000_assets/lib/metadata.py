"""Helpers that turn files and tables into Dagster metadata."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg
import pandas as pd

from l1000_assets.core.hashing import sha256_file


def file_metadata(path: Path, *, hash_bytes: bool = False) -> dict[str, dg.MetadataValue]:
    """Path and size of a file (and its SHA-256 for small files when asked)."""
    out: dict[str, dg.MetadataValue] = {
        "path": dg.MetadataValue.path(str(path)),
        "size_mb": dg.MetadataValue.float(round(path.stat().st_size / 1e6, 2)),
    }
    if hash_bytes:
        out["sha256"] = dg.MetadataValue.text(sha256_file(path))
    return out


def markdown_preview(df: pd.DataFrame, rows: int = 5) -> dg.MetadataValue:
    return dg.MetadataValue.md(df.head(rows).to_markdown(index=False))


def png_markdown(path: Path, title: str) -> dg.MetadataValue:
    """A PNG file embedded in markdown metadata (the UI shows it inline)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{data})")
