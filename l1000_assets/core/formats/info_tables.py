"""Read LINCS metadata tables (``inst_info``, ``gene_info``, ``pert_info``, ``cell_info``).

The GEO files are tab-separated text, sometimes gzipped, sometimes latin-1, and use the
string ``-666`` for a missing value. :func:`read_info_table` returns every column as a
pandas ``string`` column with ``-666`` (and empty cells) turned into ``<NA>``, so ids such
as ``pr_gene_id`` keep their exact text. Typed conversion happens downstream.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from l1000_assets.core.errors import L1000InputError, preview_ids

MISSING_VALUES = ("-666", "-666.0", "")


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def read_info_table(
    path: str | Path,
    *,
    required: Sequence[str] = (),
    id_column: str | None = None,
) -> pd.DataFrame:
    """Read a tab-separated LINCS info table (plain or ``.gz``; UTF-8 or latin-1).

    Parameters
    ----------
    path
        The table.
    required
        Columns that must be present; a missing one raises :class:`L1000InputError`.
    id_column
        If given, this column must be unique and non-missing.

    Returns
    -------
    pandas.DataFrame
        All columns as ``string`` dtype, missing values (``-666``, empty) as ``<NA>``.
    """
    path = Path(path)
    if not path.exists():
        raise L1000InputError(path, "file not found")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        # zlib.error (a corrupt deflate stream) is not an OSError: caught by name.
        raise L1000InputError(path, f"cannot read (truncated or corrupt gzip?): {exc}") from exc
    if not raw.strip():
        raise L1000InputError(path, "file is empty")
    try:
        df = pd.read_csv(
            io.StringIO(_decode(raw)),
            sep="\t",
            dtype="string",
            keep_default_na=False,
            na_values=list(MISSING_VALUES),
            quoting=3,
        )
    except pd.errors.ParserError as exc:
        raise L1000InputError(path, f"not a tab-separated table: {exc}") from exc
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise L1000InputError(
            path, f"missing required column(s) {missing}; found {list(df.columns)[:12]}"
        )
    if id_column is not None:
        ids = df[id_column]
        if ids.isna().any():
            raise L1000InputError(path, f"{int(ids.isna().sum())} row(s) have no {id_column}")
        dup = ids[ids.duplicated()].unique()
        if len(dup):
            raise L1000InputError(path, f"duplicate {id_column} value(s): {preview_ids(dup)}")
    return df


def landmark_gene_ids(gene_info: pd.DataFrame, *, path: str | Path = "gene_info") -> list[str]:
    """The ``pr_gene_id`` of landmark genes (``pr_is_lm == 1``), in table order."""
    for flag in ("pr_is_lm", "pr_is_lmark"):
        if flag in gene_info.columns:
            is_lm = gene_info[flag].astype("string").str.strip().isin(["1", "1.0", "Y", "True"])
            return gene_info.loc[is_lm, "pr_gene_id"].astype(str).tolist()
    raise L1000InputError(path, "no pr_is_lm column to identify landmark genes")
