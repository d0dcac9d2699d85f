"""GCTX (HDF5) streaming read and write with h5py, in bounded memory.

A GCTX file stores the matrix **samples x genes** at ``0/DATA/0/matrix``; gene (row) ids
at ``0/META/ROW/id`` and sample (column) ids at ``0/META/COL/id``, with further metadata
fields beside them. "Row" and "column" below follow the GCT convention (rows = genes,
columns = samples), not the on-disk axis order.

:class:`GctxReader` checks the file once when opened and reads selected rows in blocks of
columns (:class:`~l1000_assets.core.formats.matrix.MatrixReader`), so memory is
``O(len(rows) x block)`` however large the file; :meth:`GctxReader.read_span` reads into a
buffer the caller reuses, and :meth:`GctxReader.col_id_array` gives the column ids as Arrow
without a Python string per id. :class:`GctxWriter` writes column blocks into a chunked
dataset, so a release of millions of samples is written in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.matrix import MatrixReader, RowSpan

VERSION_ATTR = "version"
VERSION = "GCTX1.0"
MATRIX_NODE = "0/DATA/0/matrix"
ROW_META_NODE = "0/META/ROW"
COL_META_NODE = "0/META/COL"
ROW_IDS_NODE = f"{ROW_META_NODE}/id"
COL_IDS_NODE = f"{COL_META_NODE}/id"

MISSING = "-666"

#: Column ids converted to Arrow per slice: only a slice's Python ``bytes`` are alive at once.
ID_SLICE = 1 << 15


def decode_strings(values: np.ndarray) -> NDArray[np.object_]:
    """Decode HDF5 byte strings to ``str`` (UTF-8, falling back to latin-1 per value)."""
    if values.dtype.kind != "S" and values.dtype != object:
        return values.astype(str)
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if isinstance(v, bytes):
            try:
                v = v.decode("utf-8")
            except UnicodeDecodeError:
                v = v.decode("latin-1")
        out[i] = v
    return out


def _arrow_ids(dataset: h5py.Dataset, step: int = ID_SLICE) -> pa.Array:
    """The HDF5 id strings of ``dataset`` as one Arrow string array, latin-1 where not
    UTF-8. Read ``step`` ids at a time: variable-length ids come as Python ``bytes``
    objects (about 80 bytes each), so only a slice of them is alive at once."""
    chunks = [_arrow_id_slice(dataset[s : s + step]) for s in range(0, len(dataset), step)]
    if len(chunks) == 1:
        return chunks[0]
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


def _arrow_id_slice(raw: np.ndarray) -> pa.Array:
    try:
        # Variable-length ids come as an object array: Arrow converts a list of them far
        # faster than the array itself.
        ids = raw.tolist() if raw.dtype == object else raw
        return pa.array(ids, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array(decode_strings(raw), pa.string())


class GctxReader(MatrixReader):
    """Open a GCTX file and stream selected rows in column blocks.

    The file is checked when opened: the GCTX nodes, a 2-D matrix and id vectors of its
    shape. The ids are read when first asked for: :attr:`row_ids` and :attr:`col_ids` as
    ``str`` arrays (kept), :meth:`col_id_array` as Arrow, read in slices (not kept: at a
    million profiles the ``str`` ids take about 80 MB, the Arrow ones a quarter of that).

    Parameters
    ----------
    path
        The ``.gctx`` file.

    Raises
    ------
    L1000InputError
        If the file is missing, not HDF5, truncated, or lacks the GCTX nodes, or if the id
        vectors do not match the matrix shape.
    """

    def __init__(self, path: str | Path):
        super().__init__(path)
        if not self.path.exists():
            raise L1000InputError(self.path, "file not found")
        try:
            self._h5 = h5py.File(self.path, "r")
        except OSError as exc:
            raise L1000InputError(
                self.path, f"not a readable HDF5/GCTX file (truncated or corrupt?): {exc}"
            ) from exc
        try:
            missing = [n for n in (MATRIX_NODE, ROW_IDS_NODE, COL_IDS_NODE) if n not in self._h5]
            if missing:
                raise L1000InputError(
                    self.path, f"HDF5 file lacks the GCTX node(s) {', '.join(missing)}"
                )
            self._matrix = self._h5[MATRIX_NODE]
            if self._matrix.ndim != 2:
                raise L1000InputError(
                    self.path, f"{MATRIX_NODE} has {self._matrix.ndim} dimensions, expected 2"
                )
            n_row_ids, n_col_ids = self._h5[ROW_IDS_NODE].size, self._h5[COL_IDS_NODE].size
            n_cols, n_rows = self._matrix.shape
            if n_row_ids != n_rows or n_col_ids != n_cols:
                raise L1000InputError(
                    self.path,
                    f"id vectors ({n_row_ids} row ids, {n_col_ids} column ids) "
                    f"do not match the matrix ({n_cols} samples x {n_rows} genes on disk)",
                )
        except BaseException:
            self._h5.close()
            raise
        self._row_ids: NDArray[np.object_] | None = None
        self._col_ids: NDArray[np.object_] | None = None

    def close(self) -> None:
        self._h5.close()

    # -- shape, ids and metadata -----------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` = ``(genes, samples)``, the GCT convention."""
        n_cols, n_rows = self._matrix.shape
        return n_rows, n_cols

    @property
    def chunks(self) -> tuple[int, int] | None:
        """On-disk chunk shape ``(samples, genes)``, or None for contiguous storage."""
        return self._matrix.chunks

    @property
    def row_ids(self) -> NDArray[np.object_]:
        if self._row_ids is None:
            with self._reading(ROW_IDS_NODE):
                self._row_ids = decode_strings(self._h5[ROW_IDS_NODE][()])
        return self._row_ids

    @property
    def col_ids(self) -> NDArray[np.object_]:
        if self._col_ids is None:
            with self._reading(COL_IDS_NODE):
                self._col_ids = decode_strings(self._h5[COL_IDS_NODE][()])
        return self._col_ids

    def col_id_array(self, step: int = ID_SLICE) -> pa.Array:
        """Column ids as one Arrow ``string`` array, read ``step`` ids at a time."""
        with self._reading(COL_IDS_NODE):
            return _arrow_ids(self._h5[COL_IDS_NODE], step)

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Name the file and ``what`` was read when HDF5 fails (a truncated file)."""
        try:
            yield
        except (OSError, RuntimeError) as exc:
            raise L1000InputError(
                self.path, f"cannot read {what} (truncated or corrupt?): {exc}"
            ) from exc

    def col_metadata(self, fields: Sequence[str] | None = None) -> pd.DataFrame:
        """Column (sample) metadata stored in the file, indexed by column id; ``-666`` -> NA."""
        return self._metadata(COL_META_NODE, self.col_ids, fields)

    def row_metadata(self, fields: Sequence[str] | None = None) -> pd.DataFrame:
        """Row (gene) metadata stored in the file, indexed by row id; ``-666`` -> NA."""
        return self._metadata(ROW_META_NODE, self.row_ids, fields)

    def _metadata(self, node: str, ids: np.ndarray, fields: Sequence[str] | None) -> pd.DataFrame:
        group = self._h5[node]
        names = [f for f in (fields or sorted(group.keys())) if f != "id"]
        data = {}
        for name in names:
            if name not in group:
                raise L1000InputError(self.path, f"metadata field {node}/{name} not found")
            raw = group[name][()]
            if raw.dtype.kind in "SOU":
                values = pd.Series(decode_strings(raw), dtype="string")
                data[name] = values.mask(values == MISSING)
            else:
                data[name] = pd.Series(raw).mask(raw == -666)
        df = pd.DataFrame(data)
        df.index = pd.Index(ids, name="id", dtype="string")
        return df

    # -- data ------------------------------------------------------------------------
    def read_span(
        self, start: int, stop: int, span: RowSpan, out: NDArray[np.float32] | None = None
    ) -> NDArray[np.float32]:
        shape = (stop - start, span.width)
        out = np.empty(shape, np.float32) if out is None else out[: shape[0]]
        with self._reading(f"samples {start}..{stop}"):
            # Straight into the buffer: no array per block, no second copy.
            self._matrix.read_direct(out, np.s_[start:stop, span.lo : span.hi])
        return out


class GctxWriter:
    """Write a GCTX file block by block into a chunked float32 matrix.

    Usage::

        with GctxWriter(path, row_ids, n_cols) as w:
            for ids, block in blocks:          # block: samples x genes
                w.write_block(ids, block)
            w.write_col_metadata(df)           # optional, indexed like the column ids

    The file is written under a temporary name and renamed into place by ``close`` only
    when every column was written; on error the temporary file is removed and any existing
    file at ``path`` stays as it was.
    """

    def __init__(
        self,
        path: str | Path,
        row_ids: Sequence[str],
        n_cols: int,
        *,
        chunks: tuple[int, int] = (1000, 1000),
        row_metadata: pd.DataFrame | None = None,
        compression: str | None = None,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self.n_rows = len(row_ids)
        self.n_cols = int(n_cols)
        self._h5 = h5py.File(self._tmp, "w")
        self._h5.attrs[VERSION_ATTR] = np.bytes_(VERSION)
        chunk_shape = (max(1, min(chunks[0], self.n_cols)), max(1, min(chunks[1], self.n_rows)))
        self._matrix = self._h5.create_dataset(
            MATRIX_NODE,
            shape=(self.n_cols, self.n_rows),
            dtype="float32",
            chunks=chunk_shape,
            compression=compression,
        )
        _write_strings(self._h5, ROW_IDS_NODE, row_ids)
        self._col_ids = self._h5.create_dataset(
            COL_IDS_NODE,
            shape=(self.n_cols,),
            dtype=h5py.string_dtype("utf-8"),
        )
        if row_metadata is not None:
            self._write_metadata(ROW_META_NODE, row_metadata)
        self._written = 0
        self._closed = False

    def __enter__(self) -> GctxWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def written(self) -> int:
        return self._written

    def write_block(self, col_ids: Sequence[str], values: np.ndarray) -> None:
        """Append ``values`` (samples x genes, for the next ``len(col_ids)`` columns)."""
        values = np.asarray(values, dtype=np.float32)
        n = len(col_ids)
        if values.shape != (n, self.n_rows):
            raise ValueError(f"block shape {values.shape} != ({n}, {self.n_rows})")
        if self._written + n > self.n_cols:
            raise ValueError(f"writing {self._written + n} columns into a file of {self.n_cols}")
        s = slice(self._written, self._written + n)
        self._matrix[s] = values
        self._col_ids[s] = [str(c) for c in col_ids]
        self._written += n

    def write_col_metadata(self, metadata: Mapping[str, Sequence] | pd.DataFrame) -> None:
        """Store column metadata fields (one value per column, in column order)."""
        self._write_metadata(COL_META_NODE, metadata)

    def _write_metadata(self, node: str, metadata: Mapping[str, Sequence] | pd.DataFrame) -> None:
        for name, values in (
            dict(metadata).items() if not isinstance(metadata, pd.DataFrame) else metadata.items()
        ):
            if name == "id":
                continue
            arr = np.asarray(values)
            if arr.dtype.kind in "iuf":
                self._h5.create_dataset(f"{node}/{name}", data=arr)
            else:
                _write_strings(
                    self._h5, f"{node}/{name}", [MISSING if pd.isna(v) else str(v) for v in arr]
                )

    def close(self) -> None:
        if self._closed:
            return
        if self._written != self.n_cols:
            self.abort()
            raise ValueError(f"{self.path}: only {self._written} of {self.n_cols} columns written")
        self._h5.close()
        self._tmp.replace(self.path)
        self._closed = True

    def abort(self) -> None:
        if self._closed:
            return
        self._h5.close()
        self._tmp.unlink(missing_ok=True)
        self._closed = True


def _write_strings(h5: h5py.File, node: str, values: Sequence[str]) -> None:
    encoded = np.array([str(v).encode("utf-8") for v in values])
    h5.create_dataset(node, data=encoded)
