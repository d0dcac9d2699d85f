"""GCTX (HDF5) streaming read and write with h5py, in bounded memory.

A GCTX file stores the matrix **samples x genes** at ``0/DATA/0/matrix``; gene (row) ids
at ``0/META/ROW/id`` and sample (column) ids at ``0/META/COL/id``, with further metadata
fields beside them. "Row" and "column" below follow the GCT convention (rows = genes,
columns = samples), not the on-disk axis order.

:class:`GctxReader` reads selected rows in blocks of columns, so memory is
``O(len(rows) x block)`` however large the file. :class:`GctxWriter` writes column blocks
into a chunked dataset, so a release of millions of samples is written in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from l1000_assets.core.errors import L1000InputError, preview_ids

VERSION_ATTR = "version"
VERSION = "GCTX1.0"
MATRIX_NODE = "0/DATA/0/matrix"
ROW_META_NODE = "0/META/ROW"
COL_META_NODE = "0/META/COL"
ROW_IDS_NODE = f"{ROW_META_NODE}/id"
COL_IDS_NODE = f"{COL_META_NODE}/id"

MISSING = "-666"


def decode_strings(values: np.ndarray) -> np.ndarray:
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


@dataclass(frozen=True)
class ColumnBlock:
    """One block of columns (samples) for the selected rows (genes).

    ``values`` has shape ``(stop - start, n_selected_rows)``: samples x genes, float32,
    in the order the rows were requested.
    """

    start: int
    stop: int
    col_ids: np.ndarray
    values: np.ndarray


class GctxReader:
    """Open a GCTX file and stream selected rows in column blocks.

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
        self.path = Path(path)
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
            self.row_ids = decode_strings(self._h5[ROW_IDS_NODE][()])
            self.col_ids = decode_strings(self._h5[COL_IDS_NODE][()])
            n_cols, n_rows = self._matrix.shape
            if len(self.row_ids) != n_rows or len(self.col_ids) != n_cols:
                raise L1000InputError(
                    self.path,
                    f"id vectors ({len(self.row_ids)} row ids, {len(self.col_ids)} column ids) "
                    f"do not match the matrix ({n_cols} samples x {n_rows} genes on disk)",
                )
        except BaseException:
            self._h5.close()
            raise
        self._row_index: dict[str, int] | None = None

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> GctxReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._h5.close()

    # -- shape and metadata ----------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` = ``(genes, samples)``, the GCT convention."""
        n_cols, n_rows = self._matrix.shape
        return n_rows, n_cols

    @property
    def chunks(self) -> tuple[int, int] | None:
        """On-disk chunk shape ``(samples, genes)``, or None for contiguous storage."""
        return self._matrix.chunks

    def row_positions(self, row_ids: Sequence[str]) -> np.ndarray:
        """Positions of ``row_ids`` in the file, in the order given.

        Raises :class:`L1000InputError` naming a few ids that the file lacks.
        """
        if self._row_index is None:
            self._row_index = {rid: i for i, rid in enumerate(self.row_ids)}
        missing = [r for r in map(str, row_ids) if r not in self._row_index]
        if missing:
            raise L1000InputError(
                self.path,
                f"{len(missing)} requested row id(s) are not in the file: {preview_ids(missing)}",
            )
        return np.fromiter(
            (self._row_index[str(r)] for r in row_ids), dtype=np.int64, count=len(row_ids)
        )

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
    def iter_blocks(
        self,
        rows: Sequence[int] | np.ndarray | None = None,
        *,
        block_size: int | None = None,
        start: int = 0,
        stop: int | None = None,
        check_finite: bool = True,
    ) -> Iterator[ColumnBlock]:
        """Stream the selected rows (gene positions) in blocks of columns (samples).

        Parameters
        ----------
        rows
            Gene positions to read, in the order wanted (default: all rows). Only these
            are returned; reading a contiguous span of genes that covers them is cheaper
            on HDF5 than a fancy index, so the reader fetches the span and subsets it.
        block_size
            Samples per block. Default: the on-disk sample chunk size rounded up to cover
            at least 1,024 samples, so each chunk is read exactly once.
        start, stop
            Sample range to read (default: all).
        check_finite
            Raise :class:`L1000InputError` naming the first bad sample id if a block holds
            NaN or infinite values.

        Yields
        ------
        ColumnBlock
            ``values`` shaped ``(n_samples_in_block, len(rows))``, float32.
        """
        n_cols = self._matrix.shape[0]
        stop = n_cols if stop is None else min(stop, n_cols)
        rows = np.arange(self._matrix.shape[1]) if rows is None else np.asarray(rows, np.int64)
        if block_size is None:
            chunk = (self.chunks or (1024, 0))[0]
            block_size = chunk * max(1, -(-1024 // chunk))
        lo, hi = int(rows.min()), int(rows.max()) + 1
        local = rows - lo
        contiguous = bool(np.array_equal(local, np.arange(len(rows))))
        for b0 in range(start, stop, block_size):
            b1 = min(b0 + block_size, stop)
            try:
                span = self._matrix[b0:b1, lo:hi]
            except (OSError, RuntimeError) as exc:
                raise L1000InputError(
                    self.path, f"cannot read samples {b0}..{b1} (truncated or corrupt?): {exc}"
                ) from exc
            values = span if contiguous else span[:, local]
            values = np.asarray(values, dtype=np.float32)
            if check_finite and not np.isfinite(values).all():
                bad = b0 + int(np.nonzero(~np.isfinite(values).all(axis=1))[0][0])
                raise L1000InputError(
                    self.path, f"non-finite values (NaN or inf) in sample {self.col_ids[bad]!r}"
                )
            yield ColumnBlock(b0, b1, self.col_ids[b0:b1], values)

    def read(self, rows: Sequence[int] | np.ndarray | None = None, **kwargs) -> np.ndarray:
        """All selected rows for all (or ``start``..``stop``) samples: samples x genes.

        Convenience for small files; use :meth:`iter_blocks` for large ones.
        """
        return np.concatenate([b.values for b in self.iter_blocks(rows, **kwargs)], axis=0)


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
