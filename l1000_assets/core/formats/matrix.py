"""What the level-4 matrix readers share: selected rows (genes) read in blocks of columns
(samples), samples x genes, float32, as GCTX stores them.

:class:`MatrixReader` is the interface of :class:`~l1000_assets.core.formats.gctx.GctxReader`
(HDF5, streamed from disk) and :class:`~l1000_assets.core.formats.gct.GctReader` (GCT text,
parsed whole); a reader provides its shape, chunking, ids and :meth:`~MatrixReader.read_span`,
and the row look-up, the chunk-aligned spans and blocks and the block iteration are written
here once. :func:`open_matrix` opens a release's matrix of either format with its rows keyed
by gene id. "Row" and "column" follow the GCT convention (rows = genes, columns = samples),
not the on-disk axis order.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from numpy.typing import NDArray

from l1000_assets.core.errors import L1000InputError, preview_ids

#: Samples a default block covers at least (whole on-disk chunks of them).
DEFAULT_BLOCK_SAMPLES = 1024


@dataclass(frozen=True)
class ColumnBlock:
    """One block of columns (samples) for the selected rows (genes).

    ``values`` has shape ``(stop - start, n_selected_rows)``: samples x genes, float32,
    in the order the rows were requested.
    """

    start: int
    stop: int
    col_ids: NDArray[np.object_]
    values: NDArray[np.float32]


@dataclass(frozen=True)
class RowSpan:
    """Selected rows read as one span of genes ``lo..hi`` (whole on-disk chunks of them),
    and where each selected row sits in the span, in the order asked: ``index`` is a slice
    when they are consecutive (a sliced gather copies rows whole), else positions."""

    lo: int
    hi: int
    index: slice | NDArray[np.int64]

    @property
    def width(self) -> int:
        return self.hi - self.lo

    @property
    def whole(self) -> bool:
        """Whether the selected rows are the span itself, in order."""
        return isinstance(self.index, slice) and self.index == slice(0, self.width)


class MatrixReader(ABC):
    """A level-4 matrix opened for reading selected rows in blocks of columns.

    Subclasses provide the shape, chunking, ids, metadata and :meth:`read_span`; use a
    reader as a context manager (or call :meth:`close`).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._row_index: dict[str, int] | None = None

    # -- what a format provides -----------------------------------------------------
    @property
    @abstractmethod
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)`` = ``(genes, samples)``, the GCT convention."""

    @property
    def chunks(self) -> tuple[int, int] | None:
        """On-disk chunk shape ``(samples, genes)``, or None (contiguous or in memory)."""
        return None

    @property
    @abstractmethod
    def row_ids(self) -> NDArray[np.object_]:
        """Row (gene) ids as ``str``."""

    @property
    @abstractmethod
    def col_ids(self) -> NDArray[np.object_]:
        """Column (sample) ids as ``str``."""

    @abstractmethod
    def col_id_array(self) -> pa.Array:
        """Column (sample) ids as one Arrow ``string`` array (no Python object per id)."""

    @abstractmethod
    def col_metadata(self, fields: Sequence[str] | None = None) -> pd.DataFrame:
        """Column (sample) metadata, indexed by column id."""

    @abstractmethod
    def row_metadata(self, fields: Sequence[str] | None = None) -> pd.DataFrame:
        """Row (gene) metadata, indexed by row id."""

    @abstractmethod
    def read_span(
        self, start: int, stop: int, span: RowSpan, out: NDArray[np.float32] | None = None
    ) -> NDArray[np.float32]:
        """Samples ``start..stop`` x genes ``span.lo..span.hi``, float32.

        Read into ``out[: stop - start]`` (C-contiguous, ``span.width`` wide) when given, so
        a caller can reuse one buffer; else into a new array. Raises
        :class:`L1000InputError` if the file cannot be read there.
        """

    def close(self) -> None:  # noqa: B027 - not abstract: a reader held in memory has none
        """Release the file."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- written once for every format ----------------------------------------------
    def row_positions(self, row_ids: Sequence[str]) -> NDArray[np.int64]:
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

    def row_span(self, rows: Sequence[int] | NDArray[np.integer]) -> RowSpan:
        """The span of genes to read for rows ``rows`` (positions, in the order wanted).

        The span covers whole on-disk chunks along the gene axis: HDF5 then copies each
        chunk's rows in one piece instead of row by row; the selected rows are picked out
        of it after.
        """
        rows = np.asarray(rows, np.int64)
        width = (self.chunks or (1, 1))[1]
        lo = int(rows.min()) // width * width
        hi = min(-(-(int(rows.max()) + 1) // width) * width, self.shape[0])
        local = rows - lo
        first = int(local[0])
        if np.array_equal(local, np.arange(first, first + len(local))):
            return RowSpan(lo, hi, slice(first, first + len(local)))
        return RowSpan(lo, hi, local)

    def aligned_blocks(self, block_size: int) -> tuple[int, int]:
        """``(align, samples)``: blocks of whole on-disk sample chunks when ``block_size``
        holds one (a chunk split between two blocks would be read, and copied, twice):
        blocks then start at multiples of ``align`` and hold ``samples`` samples."""
        step = (self.chunks or (1, 1))[0]
        align = step if block_size >= step else 1
        return align, block_size // align * align

    def iter_blocks(
        self,
        rows: Sequence[int] | NDArray[np.integer] | None = None,
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
            are returned; the reader fetches the span of whole chunks that covers them
            (:meth:`row_span`, cheaper on HDF5 than a fancy index) and subsets it.
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
            ``values`` shaped ``(n_samples_in_block, len(rows))``, float32, a new array
            each block.
        """
        n_rows, n_cols = self.shape
        stop = n_cols if stop is None else min(stop, n_cols)
        rows = np.arange(n_rows) if rows is None else np.asarray(rows, np.int64)
        if block_size is None:
            chunk = (self.chunks or (DEFAULT_BLOCK_SAMPLES, 0))[0]
            block_size = chunk * max(1, -(-DEFAULT_BLOCK_SAMPLES // chunk))
        span = self.row_span(rows)
        for b0 in range(start, stop, block_size):
            b1 = min(b0 + block_size, stop)
            values = self.read_span(b0, b1, span)
            if not span.whole:
                values = np.ascontiguousarray(values[:, span.index])
            if check_finite and not np.isfinite(values).all():
                bad = b0 + int(np.nonzero(~np.isfinite(values).all(axis=1))[0][0])
                raise L1000InputError(
                    self.path, f"non-finite values (NaN or inf) in sample {self.col_ids[bad]!r}"
                )
            yield ColumnBlock(b0, b1, self.col_ids[b0:b1], values)

    def read(
        self, rows: Sequence[int] | NDArray[np.integer] | None = None, **kwargs
    ) -> NDArray[np.float32]:
        """All selected rows for all (or ``start``..``stop``) samples: samples x genes.

        Convenience for small files; use :meth:`iter_blocks` for large ones.
        """
        return np.concatenate([b.values for b in self.iter_blocks(rows, **kwargs)], axis=0)


def open_matrix(path: str | Path) -> MatrixReader:
    """A release's level-4 matrix, GCT text (``.gct``) or GCTX, with its rows keyed by gene
    id (a GCT keyed by probe id that carries ``pr_gene_id`` for every row is read by that)."""
    path = Path(path)
    # Imported here: both reader modules import this one.
    if path.suffix == ".gct":
        from l1000_assets.core.formats.gct import GENE_ID_FIELD, GctReader

        return GctReader(path, row_id_field=GENE_ID_FIELD)
    from l1000_assets.core.formats.gctx import GctxReader

    return GctxReader(path)
