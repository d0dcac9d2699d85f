"""Result tables written where the user asks, in the format the file name says.

``.csv``, ``.tsv``, ``.parquet`` and ``.json`` (an array of records; ``.jsonl`` / ``.ndjson``:
one record a line). Written to a temporary name and renamed into place.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from l1000_assets.core.atomic import atomic_file

FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def table_format(path: str | Path) -> str:
    """The format of an output file from its extension; ``ValueError`` naming the choices
    for any other."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(
            f"{path}: cannot tell the format from {suffix or 'no extension'!r}; "
            f"name the file {', '.join(f'*{s}' for s in FORMATS)}"
        )
    return FORMATS[suffix]


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` to ``path`` in the format of its extension (:func:`table_format`)."""
    path = Path(path)
    kind = table_format(path)
    with atomic_file(path) as tmp:
        if kind == "csv":
            df.to_csv(tmp, index=False)
        elif kind == "tsv":
            df.to_csv(tmp, index=False, sep="\t")
        elif kind == "parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_json(tmp, orient="records", lines=kind == "jsonl", force_ascii=False)
    return path
