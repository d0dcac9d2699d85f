"""GCT 1.2/1.3 text files (``.gct``), parsed with cmapPy through the compatibility layer.

:class:`GctReader` parses a file whole (GCT files are small: one plate) and serves it
behind the interface of :class:`~l1000_assets.core.formats.gctx.GctxReader`
(:class:`~l1000_assets.core.formats.matrix.MatrixReader`), so a release ingest reads either
format the same way; its ``values`` are the whole matrix, samples x genes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.formats import compat
from l1000_assets.core.formats.matrix import MatrixReader, RowSpan

#: The row metadata field that carries the gene id in GCT files keyed by probe id.
GENE_ID_FIELD = "pr_gene_id"


class GctReader(MatrixReader):
    """A parsed GCT text file: ``values`` is samples x genes (like a GCTX block), float32.

    Parameters
    ----------
    path
        The ``.gct`` file.
    row_id_field
        A row metadata field to key the rows by instead of the file's row ids, when the file
        has it for every row: some GCT files key rows by probe id and carry the gene id as
        row metadata (:data:`GENE_ID_FIELD`). None: the file's row ids.

    Raises
    ------
    L1000InputError
        If the file is missing or not a valid GCT, or holds missing (``-666``/NaN) or
        non-finite values.
    """

    def __init__(self, path: str | Path, *, row_id_field: str | None = None):
        super().__init__(path)
        if not self.path.exists():
            raise L1000InputError(self.path, "file not found")
        try:
            gctoo = compat.parse(self.path)
        except Exception as exc:  # cmapPy raises bare Exception/ValueError/AssertionError
            raise L1000InputError(self.path, f"not a valid GCT file: {exc}") from exc
        data = gctoo.data_df
        self.values: NDArray[np.float32] = np.ascontiguousarray(data.to_numpy(dtype=np.float32).T)
        bad = ~np.isfinite(self.values).all(axis=1)
        if bad.any():
            raise L1000InputError(
                self.path,
                f"non-finite or missing values in sample(s) {preview_ids(data.columns[bad])}",
            )
        self._col_ids = data.columns.astype(str).to_numpy()
        self._row_ids = data.index.astype(str).to_numpy()
        meta = gctoo.row_metadata_df
        if row_id_field is not None and row_id_field in meta and meta[row_id_field].notna().all():
            self._row_ids = (
                meta[row_id_field].astype(str).str.replace(r"\.0$", "", regex=True).to_numpy()
            )
            meta = meta.assign(**{row_id_field: self._row_ids})
        self._row_meta = meta
        self._col_meta = gctoo.col_metadata_df

    @property
    def shape(self) -> tuple[int, int]:
        n_cols, n_rows = self.values.shape
        return n_rows, n_cols

    @property
    def row_ids(self) -> NDArray[np.object_]:
        return self._row_ids

    @property
    def col_ids(self) -> NDArray[np.object_]:
        return self._col_ids

    def col_id_array(self) -> pa.Array:
        return pa.array(self._col_ids.tolist(), pa.string())

    def col_metadata(self, fields: Sequence[str] | None = None) -> pd.DataFrame:
        """Column (sample) metadata as cmapPy parsed it, indexed by column id."""
        return self._metadata(self._col_meta, self._col_ids, fields)

    def row_metadata(self, fields: Sequence[str] | None = None) -> pd.DataFrame:
        """Row (gene) metadata as cmapPy parsed it (``row_id_field`` as the row ids),
        indexed by row id."""
        return self._metadata(self._row_meta, self._row_ids, fields)

    def _metadata(
        self, meta: pd.DataFrame, ids: np.ndarray, fields: Sequence[str] | None
    ) -> pd.DataFrame:
        missing = [f for f in fields or () if f not in meta.columns]
        if missing:
            raise L1000InputError(self.path, f"metadata field(s) {missing} not found")
        out = meta[list(fields)] if fields else meta.copy()
        out.index = pd.Index(ids, name="id", dtype="string")
        return out

    def read_span(
        self, start: int, stop: int, span: RowSpan, out: NDArray[np.float32] | None = None
    ) -> NDArray[np.float32]:
        values = self.values[start:stop, span.lo : span.hi]
        if out is None:
            return values.copy()
        out = out[: stop - start]
        out[:] = values
        return out
