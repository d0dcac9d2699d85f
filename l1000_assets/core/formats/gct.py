"""GCT 1.2/1.3 text files (``.gct``), parsed with cmapPy through the compatibility layer.

:func:`read_gct` parses a file; :class:`GctMatrixSource` puts a parsed GCT behind the
interface of :class:`~l1000_assets.core.formats.gctx.GctxReader` for release ingest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.formats import compat


@dataclass(frozen=True)
class GctMatrix:
    """A parsed GCT: ``values`` is samples x genes (like a GCTX block), float32."""

    row_ids: np.ndarray
    col_ids: np.ndarray
    values: np.ndarray
    row_metadata: pd.DataFrame
    col_metadata: pd.DataFrame


def read_gct(path: str | Path) -> GctMatrix:
    """Parse a GCT text file; missing (``-666``/NaN) or non-finite values are an error."""
    path = Path(path)
    if not path.exists():
        raise L1000InputError(path, "file not found")
    try:
        gctoo = compat.parse(path)
    except Exception as exc:  # cmapPy raises bare Exception/ValueError/AssertionError
        raise L1000InputError(path, f"not a valid GCT file: {exc}") from exc
    data = gctoo.data_df
    values = data.to_numpy(dtype=np.float32).T
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise L1000InputError(
            path, f"non-finite or missing values in sample(s) {preview_ids(data.columns[bad])}"
        )
    return GctMatrix(
        row_ids=data.index.astype(str).to_numpy(),
        col_ids=data.columns.astype(str).to_numpy(),
        values=values,
        row_metadata=gctoo.row_metadata_df,
        col_metadata=gctoo.col_metadata_df,
    )


class GctMatrixSource:
    """A parsed GCT behaving like :class:`GctxReader` (``row_ids`` are gene ids)."""

    def __init__(self, path: Path):
        self.path = path
        gct = read_gct(path)
        self.values = gct.values  # samples x genes, float32
        self.col_ids = gct.col_ids
        meta = gct.row_metadata
        # Some GCT files key rows by probe id and carry the gene id as row metadata.
        if "pr_gene_id" in meta.columns and meta["pr_gene_id"].notna().all():
            self.row_ids = (
                meta["pr_gene_id"].astype(str).str.replace(r"\.0$", "", regex=True).to_numpy()
            )
        else:
            self.row_ids = gct.row_ids
        self.row_metadata = meta.assign(pr_gene_id=self.row_ids)
        self.col_metadata = gct.col_metadata
        self._index = {g: i for i, g in enumerate(self.row_ids)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def row_positions(self, row_ids: Sequence[str]) -> np.ndarray:
        missing = [r for r in row_ids if r not in self._index]
        if missing:
            raise L1000InputError(
                self.path,
                f"{len(missing)} requested row id(s) are not in the file: {preview_ids(missing)}",
            )
        return np.array([self._index[r] for r in row_ids], dtype=np.int64)
