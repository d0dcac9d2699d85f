"""GCT 1.2/1.3 text files (``.gct``), parsed with cmapPy through the compatibility layer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from l1000_assets.core import compat
from l1000_assets.core.errors import L1000InputError, preview_ids


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
            path, f"non-finite or missing values in sample(s) {preview_ids(data.columns[bad])}")
    return GctMatrix(
        row_ids=data.index.astype(str).to_numpy(), col_ids=data.columns.astype(str).to_numpy(),
        values=values, row_metadata=gctoo.row_metadata_df, col_metadata=gctoo.col_metadata_df,
    )
