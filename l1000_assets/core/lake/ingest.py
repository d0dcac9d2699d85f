"""Release files -> the landmark Parquet lake.

:func:`write_landmark_profiles_from_metadata` writes the lake from the canonical metadata
tables (:func:`~l1000_assets.core.lake.read.read_canonical_instances`,
:func:`~l1000_assets.core.lake.read.read_canonical_landmarks`) and the matrix
(:func:`~l1000_assets.core.releases.local.find_matrix`), matching them as
:func:`~l1000_assets.core.releases.reconcile.reconcile` does: it streams the landmark rows of
the matrix in column blocks, drops controls and writes one Parquet file per (cell line,
release), with the landmark values as one ``fixed_size_list<float32>[978]`` column in
canonical gene order. :func:`write_landmark_profiles` does the same for a release opened with
:func:`~l1000_assets.core.releases.local.open_release`.

Memory is bounded by the block size and the number of blocks read ahead; what grows with
the release is small: the metadata is held once, as Arrow, its text columns
dictionary-encoded (about 100 bytes a profile in all), plus two row numbers per profile;
the profile columns of the rows written are decoded a block at a time. The landmark
column chunk is written as plain Parquet pages, its values copied from the block into a
small reused page buffer and from there into the file (see
:mod:`~l1000_assets.core.lake.parquet_pages`), on background threads while the matrix is
read.
"""

from __future__ import annotations

import mmap
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.formats.gct import GctMatrixSource
from l1000_assets.core.formats.gctx import (
    COL_IDS_NODE,
    MATRIX_NODE,
    ROW_IDS_NODE,
    decode_strings,
)
from l1000_assets.core.lake.parquet_pages import _CODECS, _PAGE_BYTES, _LakeFile
from l1000_assets.core.lake.read import _compact_instances
from l1000_assets.core.lake.schema import (
    N_LANDMARKS,
    PROFILE_META_COLUMNS,
    VALUES_COLUMN,
    instance_schema,
    profile_schema,
)
from l1000_assets.core.progress import Progress
from l1000_assets.core.releases.local import ReleaseData
from l1000_assets.core.releases.reconcile import SKIP, STRICT, Reconciliation
from l1000_assets.core.releases.schema import INSTANCE_COLUMNS


# --------------------------------------------------------------------------------------
# Landmark rows of a matrix, read in column blocks
# --------------------------------------------------------------------------------------
class _GctxLandmarks:
    """A GCTX opened for the lake: column ids as one Arrow array, and the landmark rows
    read block by block into one reused buffer.

    Not :class:`GctxReader`: that keeps every column id as a Python ``str`` (decoded one by
    one, ~0.1 s and ~80 bytes per profile at 200,000) and allocates and sub-indexes every
    block.
    """

    def __init__(self, path: Path, gene_ids: Sequence[str], block_size: int):
        self.path = path
        try:
            self._h5 = h5py.File(path, "r")
        except OSError as exc:
            raise L1000InputError(
                path, f"not a readable HDF5/GCTX file (truncated or corrupt?): {exc}"
            ) from exc
        try:
            missing = [n for n in (MATRIX_NODE, ROW_IDS_NODE, COL_IDS_NODE) if n not in self._h5]
            if missing:
                raise L1000InputError(
                    path, f"HDF5 file lacks the GCTX node(s) {', '.join(missing)}"
                )
            self._matrix = self._h5[MATRIX_NODE]
            row_ids = decode_strings(self._h5[ROW_IDS_NODE][()])
            self.col_ids = _arrow_ids(self._h5[COL_IDS_NODE])
            if self._matrix.shape != (len(self.col_ids), len(row_ids)):
                raise L1000InputError(
                    path,
                    f"id vectors ({len(row_ids)} row ids, {len(self.col_ids)} column ids) "
                    f"do not match the matrix (shape {self._matrix.shape}, samples x genes "
                    "on disk)",
                )
            rows = _row_positions(path, row_ids, gene_ids)
        except BaseException:
            self._h5.close()
            raise
        # Read whole on-disk chunks along the gene axis: HDF5 then copies each chunk's rows
        # in one piece instead of row by row (0.1 s instead of 0.3 s per 200,000 samples
        # for 978 of 1,000 genes); the landmarks are picked out in the per-cell gather.
        width = (self._matrix.chunks or (0, 1))[1]
        self._lo = int(rows.min()) // width * width
        self._hi = min(-(-(int(rows.max()) + 1) // width) * width, len(row_ids))
        self.columns = _as_slice(rows - self._lo)
        # Blocks of whole on-disk chunks along the sample axis too, when the block holds
        # one: a chunk split between two blocks would be read (and copied) twice.
        step = (self._matrix.chunks or (1, 1))[0]
        self.align = step if block_size >= step else 1
        self.block_rows = block_size // self.align * self.align
        self.block_bytes = self.block_rows * (self._hi - self._lo) * 4

    def new_buffer(self) -> np.ndarray:
        """A buffer for :meth:`read`: ``block_rows`` samples x the gene span."""
        return np.empty((self.block_rows, self._hi - self._lo), np.float32)

    def read(self, start: int, stop: int, buffer: np.ndarray) -> np.ndarray:
        """Samples ``start..stop`` x the gene span, read into ``buffer``."""
        out = buffer[: stop - start]
        try:
            self._matrix.read_direct(out, np.s_[start:stop, self._lo : self._hi])
        except (OSError, RuntimeError) as exc:
            raise L1000InputError(
                self.path, f"cannot read samples {start}..{stop} (truncated or corrupt?): {exc}"
            ) from exc
        return out

    def close(self) -> None:
        self._h5.close()


class _GctLandmarks:
    """A GCT text matrix (small, parsed whole) behind the interface of :class:`_GctxLandmarks`."""

    def __init__(self, path: Path, gene_ids: Sequence[str], block_size: int):
        self.path = path
        self._source = GctMatrixSource(path)
        self.col_ids = pa.array(self._source.col_ids.astype(str), pa.string())
        self.columns = _as_slice(self._source.row_positions(gene_ids))
        self.align = 1
        self.block_rows = block_size
        self.block_bytes = 0  # read in place: no buffers

    def new_buffer(self) -> None:
        return None

    def read(self, start: int, stop: int, buffer: None) -> np.ndarray:
        return self._source.values[start:stop]

    def close(self) -> None:
        return None


def _open_landmarks(
    path: Path, gene_ids: Sequence[str], block_size: int
) -> _GctxLandmarks | _GctLandmarks:
    if path.suffix == ".gct":
        return _GctLandmarks(path, gene_ids, block_size)
    if not path.exists():
        raise L1000InputError(path, "file not found")
    return _GctxLandmarks(path, gene_ids, block_size)


def _arrow_ids(dataset: h5py.Dataset, step: int = 1 << 15) -> pa.Array:
    """The HDF5 id strings of ``dataset`` as one Arrow string array, latin-1 where not
    UTF-8. Read ``step`` ids at a time: variable-length ids come as Python ``bytes``
    objects (about 80 bytes each), so only a slice of them is alive at once."""
    chunks = [_arrow_id_chunk(dataset[s : s + step]) for s in range(0, len(dataset), step)]
    if len(chunks) == 1:
        return chunks[0]
    return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())


def _arrow_id_chunk(raw: np.ndarray) -> pa.Array:
    try:
        # Variable-length ids come as an object array: converted from a list, 20 times
        # faster than from the array (0.01 s instead of 0.2 s for 200,000).
        ids = raw.tolist() if raw.dtype == object else raw
        return pa.array(ids, pa.binary()).cast(pa.string())
    except pa.ArrowInvalid:
        return pa.array(decode_strings(raw), pa.string())


def _row_positions(path: Path, row_ids: np.ndarray, wanted: Sequence[str]) -> np.ndarray:
    index = {r: i for i, r in enumerate(row_ids)}
    missing = [g for g in wanted if g not in index]
    if missing:
        raise L1000InputError(
            path, f"{len(missing)} requested row id(s) are not in the file: {preview_ids(missing)}"
        )
    return np.array([index[g] for g in wanted], dtype=np.int64)


def _as_slice(columns: np.ndarray) -> slice | np.ndarray:
    """``columns`` as a slice when they are consecutive: a sliced gather copies rows whole."""
    first = int(columns[0])
    if np.array_equal(columns, np.arange(first, first + len(columns))):
        return slice(first, first + len(columns))
    return columns


# --------------------------------------------------------------------------------------
# Matching matrix columns to metadata rows, and the per-cell-line split
# --------------------------------------------------------------------------------------
def _preview(ids: pa.Array, limit: int = 5) -> str:
    """:func:`preview_ids` of an Arrow array, converting only the ids shown."""
    more = len(ids) - limit
    return preview_ids(ids.slice(0, limit).to_pylist(), limit) + (
        f" (and {more} more)" if more > 0 else ""
    )


def _duplicates(ids: pa.Array) -> pa.Array:
    counts = pa.table({"id": ids}).group_by("id", use_threads=False).aggregate([("id", "count")])
    return counts.filter(pc.greater(counts["id_count"], 1)).column("id").combine_chunks()


def _match(
    instances: pa.Table,
    col_ids: pa.Array,
    *,
    on_bad_input: str,
    matrix_path: Path,
    metadata_path: Path,
) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
    """Metadata row and matrix position of every matrix column that has metadata.

    Returns ``(rows, positions, report)``, ascending by position; ``report`` as
    :meth:`Reconciliation.report`. ``strict`` raises on any disagreement; ``skip`` drops
    the offending ids and keeps the first of repeated ``inst_id`` rows. A repeated matrix
    column id always raises.
    """
    inst_ids = _one_chunk(instances.column("inst_id"))
    # One hash join: each matrix column gets the first metadata row of its id. Everything
    # else follows from how often each row was hit, so the common case (no disagreement)
    # costs nothing more.
    row_of_col = pc.index_in(col_ids, value_set=inst_ids)
    has_meta = row_of_col.is_valid().to_numpy(zero_copy_only=False)
    rows = row_of_col.drop_null().to_numpy()
    hits = np.bincount(rows, minlength=len(inst_ids))
    no_meta = col_ids.filter(pa.array(~has_meta))
    dup_cols = pa.concat_arrays([inst_ids.take(np.flatnonzero(hits > 1)), _duplicates(no_meta)])
    # A row that no column hit has an id missing from the matrix or repeats an earlier row.
    unhit = inst_ids.take(np.flatnonzero(hits == 0))
    dup_inst = no_profile = unhit
    if len(unhit):
        dup_inst = _duplicates(inst_ids)
        no_profile = unhit.filter(pc.invert(pc.is_in(unhit, value_set=col_ids)))
    if len(dup_inst) and on_bad_input == STRICT:
        raise L1000InputError(metadata_path, f"duplicate inst_id value(s): {_preview(dup_inst)}")
    if len(dup_cols):
        raise L1000InputError(matrix_path, f"duplicate column (sample) ids: {_preview(dup_cols)}")
    if on_bad_input == STRICT:
        if len(no_meta):
            raise L1000InputError(
                matrix_path,
                f"{len(no_meta)} profile(s) have no row in {metadata_path.name}: "
                f"{_preview(no_meta)}",
            )
        if len(no_profile):
            raise L1000InputError(
                metadata_path,
                f"{len(no_profile)} inst_id(s) have no column in "
                f"{matrix_path.name}: {_preview(no_profile)}",
            )
    report = {
        "n_matrix_columns": len(col_ids),
        "n_profiles_without_metadata": len(no_meta),
        "n_metadata_rows_without_profile": len(no_profile),
        "n_duplicate_inst_ids": len(dup_inst),
        "examples_without_metadata": _preview(no_meta),
        "examples_without_profile": _preview(no_profile),
    }
    return rows, np.flatnonzero(has_meta), report


def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    """``column`` as one array, without a copy when it is one chunk already."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _codes(column: pa.ChunkedArray, values: Sequence[str]) -> np.ndarray:
    """Per row of ``column`` (``string`` or dictionary-encoded): the index of its value in
    ``values``, -1 where not there or null. A dictionary-encoded column is looked up
    value by distinct value, not row by row."""
    value_set = pa.array(values, pa.string())
    array = _one_chunk(column)
    if not pa.types.is_dictionary(array.type):
        return pc.index_in(array, value_set=value_set).fill_null(-1).to_numpy()
    of_value = np.append(
        pc.index_in(array.dictionary, value_set=value_set).fill_null(-1).to_numpy(), -1
    )
    # A null index picks the -1 appended after the dictionary's values.
    return of_value[array.indices.fill_null(len(array.dictionary)).to_numpy()]


@dataclass(frozen=True)
class _CellSplit:
    """Wanted profiles grouped by cell line: cell line ``k`` is ``rows`` / ``positions``
    ``bounds[k]:bounds[k + 1]``, ascending by matrix position; ``rows`` are rows of
    ``meta``, the profile columns of the instances (taken a block at a time, as written)."""

    meta: pa.RecordBatch
    rows: np.ndarray
    positions: np.ndarray
    bounds: np.ndarray
    controls_removed: dict[str, int]


def _split_cells(
    instances: pa.Table, rows: np.ndarray, positions: np.ndarray, cells: Sequence[str]
) -> _CellSplit:
    """Drop controls and profiles of other cell lines; group the rest by cell line.

    Only row numbers are kept per profile: the profile columns are taken from
    ``instances`` by the writers, a block's rows at a time.
    """
    cell = _codes(instances["cell_id"], cells)[rows]
    control = _codes(instances["profile_class"], ["control"])[rows] == 0
    removed = np.bincount(cell[control & (cell >= 0)], minlength=len(cells))
    keep = np.flatnonzero(~control & (cell >= 0))
    keep = keep[np.argsort(cell[keep], kind="stable")]  # stable: positions stay ascending
    bounds = np.searchsorted(cell[keep], np.arange(len(cells) + 1))
    columns = instances.select(PROFILE_META_COLUMNS)
    meta = pa.record_batch([_one_chunk(c) for c in columns.columns], schema=columns.schema)
    index = (
        np.int32
        if max(len(instances), len(positions) and int(positions.max()) + 1) < 2**31
        else np.int64
    )
    return _CellSplit(
        meta,
        rows[keep].astype(index),
        positions[keep].astype(index),
        bounds,
        {c: int(n) for c, n in zip(cells, removed)},
    )


class _CellWriters:
    """One lake file per cell line, written from the matrix blocks by a small pool of
    threads.

    :meth:`add` hands a block's rows of one cell line to the pool, as one job, and returns
    its future; the caller reads into that block again only once its jobs are done. A job
    writes its rows in data pages of about 1 MB: each page's values are gathered from the
    block into a page buffer of the thread's own, checked for NaN and inf and written
    from there. The gather is the only copy of the values outside HDF5 and the kernel,
    there are no buffers per cell line, and row groups (closed every ``row_group_rows``
    rows of a cell line, with their profile columns) need no memory but those columns. A
    cell line's jobs run in order: each first waits for its previous one. Encoding and
    file writes release the GIL, so they run beside the matrix reads.

    Written pages are dropped from the page cache once on disk (``_drop_behind``).
    """

    def __init__(
        self,
        paths: Mapping[str, Path],
        schema: pa.Schema,
        meta: pa.RecordBatch,
        *,
        row_group_rows: int,
        compression: str | None,
        threads: int,
        matrix_path: Path,
    ):
        self._paths = dict(paths)
        self._schema = schema
        self._source = meta
        self._meta_schema = pa.schema([f for f in schema if f.name != VALUES_COLUMN])
        self._compression = (compression or "none").lower()
        if self._compression not in _CODECS:
            raise ValueError(f"compression must be one of {sorted(_CODECS)}, not {compression!r}")
        self._matrix_path = matrix_path
        self._row_group_rows = max(1, row_group_rows)
        self._page_rows = max(1, min(self._row_group_rows, _PAGE_BYTES // (N_LANDMARKS * 4)))
        for path in self._paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        self._meta: dict[str, list[pa.RecordBatch]] = {c: [] for c in self._paths}
        self._grouped = dict.fromkeys(self._paths, 0)  # rows in the open row group
        self._last: dict[str, Future] = {}
        self._writers: dict[str, _LakeFile] = {}
        self._scratch = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lake-writer")
        self.written = dict.fromkeys(self._paths, 0)

    def add(
        self,
        cell: str,
        block: np.ndarray,
        rows: np.ndarray,
        columns: slice | np.ndarray,
        meta_rows: np.ndarray,
    ) -> Future:
        """Write ``block[rows]``'s landmark ``columns`` to ``cell``'s file, with the
        profile columns of rows ``meta_rows`` of ``meta``; the block must stay as it is
        until the job is done."""
        future = self._pool.submit(
            self._job, cell, block, rows, columns, meta_rows, self._last.get(cell)
        )
        self._last[cell] = future
        return future

    def close(self) -> None:
        """Wait for every job, close the last row groups and the files (a cell line
        without profiles still gets one, with no rows)."""
        for future in list(self._last.values()):
            future.result()
        self._pool.shutdown()
        for cell in self._paths:
            writer = self._writer(cell)
            if self._grouped[cell]:
                writer.end_row_group(pa.concat_batches(self._meta[cell]))
            writer.close()

    def abort(self) -> None:
        """Drop pending jobs and close the files as they are (the caller discards them)."""
        self._pool.shutdown(cancel_futures=True)
        for writer in self._writers.values():
            writer.file.close()

    def _writer(self, cell: str) -> _LakeFile:
        if cell not in self._writers:
            # Float z-scores barely compress (snappy: 1.2 % smaller), and dictionary
            # encoding or min/max statistics over 978 floats a row buy nothing: only the
            # profile columns get them.
            self._writers[cell] = _LakeFile(
                self._paths[cell], self._schema, self._compression, PROFILE_META_COLUMNS
            )
        return self._writers[cell]

    def _job(
        self,
        cell: str,
        block: np.ndarray,
        rows: np.ndarray,
        columns: slice | np.ndarray,
        meta_rows: np.ndarray,
        previous: Future | None,
    ) -> None:
        # The profile columns of these rows only, as text: dictionary-encoded columns are
        # decoded a block at a time, not held decoded for the whole release.
        meta = self._source.take(meta_rows).cast(self._meta_schema)
        # The pool starts jobs in submission order, so `previous` is running or done here.
        if previous is not None:
            previous.result()
        writer = self._writer(cell)
        done = 0
        while done < len(rows):
            n = min(len(rows) - done, self._page_rows, self._row_group_rows - self._grouped[cell])
            page = rows[done : done + n]
            values = self._page_values(block, page, columns)
            if values is None:
                bad = int(np.flatnonzero(~np.isfinite(block[page][:, columns]).all(axis=1))[0])
                raise L1000InputError(
                    self._matrix_path,
                    "non-finite values (NaN or inf) in "
                    f"sample {meta.column('inst_id')[done + bad].as_py()!r}",
                )
            writer.write_page(n, [values])
            self._meta[cell].append(meta.slice(done, n))
            self._grouped[cell] += n
            done += n
            if self._grouped[cell] == self._row_group_rows:
                writer.end_row_group(pa.concat_batches(self._meta[cell]))
                self._meta[cell], self._grouped[cell] = [], 0
        self.written[cell] += len(rows)
        _drop_behind(writer.file, writer.position)

    def _page_values(
        self, block: np.ndarray, rows: np.ndarray, columns: slice | np.ndarray
    ) -> memoryview | None:
        """The values of ``block[rows]``'s landmark ``columns`` gathered into this
        thread's page buffer, as bytes, or None if any is NaN or inf.

        The page buffer is small and reused, so it stays in the CPU cache between the copy
        and the write that reads it (cheaper than handing the kernel each row of the block
        as a piece of its own: 0.08 s instead of 0.13 s of CPU per 200,000 profiles).
        """
        scratch = getattr(self._scratch, "values", None)
        if scratch is None:
            scratch = self._scratch.values = np.empty((self._page_rows, N_LANDMARKS), np.float32)
        out = scratch[: len(rows)]
        if isinstance(columns, slice):
            breaks = np.flatnonzero(np.diff(rows) != 1) + 1
            # Runs (profiles of one plate) are long in practice; a temporary beats a
            # Python loop over very short ones.
            if len(breaks) * 16 < len(rows):
                for s, e in zip([0, *breaks.tolist()], [*breaks.tolist(), len(rows)]):
                    out[s:e] = block[rows[s] : rows[e - 1] + 1, columns]
            else:
                out[:] = block[rows, columns]
        else:
            out[:] = block[np.ix_(rows, columns)]
        # A NaN or inf makes the sum NaN or inf (an overflowing sum of finite values is
        # checked value by value).
        if not (np.isfinite(out.sum(dtype=np.float32)) or np.isfinite(out).all()):
            return None
        if sys.byteorder != "little":  # Parquet is little-endian
            out.byteswap(inplace=True)
        return memoryview(out.reshape(-1)).cast("B")


def _drop_behind(file, end: int) -> None:
    """Start writing ``file``'s cached pages before byte ``end`` to disk and drop those
    already written.

    The lake is written once and not read back during the ingest, so its pages need not
    stay cached: dropping them lets the next row groups reuse the memory instead of taking
    fresh pages, which cost a fault and zeroing each, far more on a VM that returns free
    memory to its host (200,000 profiles on the 2-core dev VM, 6 alternating runs: median
    1.5 s instead of 2.0 s). Linux starts the writeback without waiting for it; pages
    still under writeback are dropped by a later call.

    The page holding ``end`` is kept: the next row group is appended to it, and once
    dropped it would have to be read back from disk first, a wait of its own.
    """
    whole = end // mmap.PAGESIZE * mmap.PAGESIZE
    if whole and hasattr(os, "posix_fadvise"):  # not on macOS or Windows
        os.posix_fadvise(file.fileno(), 0, whole, os.POSIX_FADV_DONTNEED)


@dataclass(frozen=True)
class LandmarkIngestReport:
    """What an ingest wrote, per cell line; ``reconciliation`` as
    :meth:`Reconciliation.report` (non-zero counts only in ``skip`` mode)."""

    release: str
    rows_written: dict[str, int]
    controls_removed: dict[str, int]
    seconds: float
    reconciliation: dict[str, object] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.rows_written.values())

    @property
    def n_skipped(self) -> int:
        """Ids dropped in ``skip`` mode: profiles without metadata, metadata rows without
        a profile and repeated ``inst_id`` rows."""
        return sum(
            int(self.reconciliation.get(k, 0))
            for k in (
                "n_profiles_without_metadata",
                "n_metadata_rows_without_profile",
                "n_duplicate_inst_ids",
            )
        )


def write_landmark_profiles_from_metadata(
    matrix_path: str | Path,
    instances: pa.Table,
    landmark_gene_ids: Sequence[str],
    out_paths: Mapping[str, Path],
    *,
    release: str,
    metadata_path: str | Path = "instances.parquet",
    on_bad_input: str = STRICT,
    block_size: int = 8192,
    row_group_rows: int = 2048,
    budget_bytes: int = 96 << 20,
    compression: str | None = None,
    write_threads: int = 2,
    progress: Progress | None = None,
) -> LandmarkIngestReport:
    """Write the non-control landmark profiles of a release for the cell lines in
    ``out_paths``, from its canonical metadata and its matrix, in one pass over the matrix.

    Parameters
    ----------
    matrix_path
        The level-4 matrix: GCTX, or GCT text.
    instances
        The canonical instances table (:func:`read_canonical_instances`); text columns may
        be ``string``, ``large_string`` or dictionary-encoded (kept so: a plain text table
        is not encoded, as its caller holds it anyway).
    landmark_gene_ids
        The 978 landmark gene ids in canonical order (:func:`read_canonical_landmarks`).
    out_paths
        Cell line -> Parquet file to write (parent directories are created).
    release
        Release name, for the report.
    metadata_path
        Where ``instances`` came from, named in errors.
    on_bad_input
        ``strict``: a matrix column without metadata, a metadata row without a matrix
        column or a repeated ``inst_id`` raises; ``skip``: those are dropped and counted in
        the report's ``reconciliation``.
    block_size
        Matrix columns (samples) read per block, rounded down to whole on-disk chunks when
        it holds one; a block takes about 4 KB per sample (the gene span read).
    row_group_rows
        Rows per Parquet row group (memory: only their profile columns are held).
    budget_bytes
        Bound on the blocks held, read ahead while earlier ones are written: at most
        ``max(2, budget_bytes // block bytes)``.
    compression
        Parquet compression codec of every column (``none``, ``snappy``, ``gzip``,
        ``brotli``, ``zstd``, ``lz4``); None writes them uncompressed.
    write_threads
        Threads writing Parquet while the matrix is read.
    progress
        Called as ``progress(done, total, elapsed_seconds)`` after each block.

    Returns
    -------
    LandmarkIngestReport

    Raises
    ------
    L1000InputError
        Naming the file and a few ids, for any of the disagreements above (``strict``), a
        repeated matrix column id, a landmark missing from the matrix, an unreadable or
        truncated matrix, or a non-finite value in a written profile.
    """
    if on_bad_input not in (STRICT, SKIP):
        raise ValueError(f"on_bad_input must be {STRICT!r} or {SKIP!r}")
    t0 = time.perf_counter()
    matrix_path, metadata_path = Path(matrix_path), Path(metadata_path)
    instances = _compact_instances(instances)
    matrix = _open_landmarks(matrix_path, landmark_gene_ids, block_size)
    try:
        rows, positions, report = _match(
            instances,
            matrix.col_ids,
            on_bad_input=on_bad_input,
            matrix_path=matrix_path,
            metadata_path=metadata_path,
        )
        split = _split_cells(instances, rows, positions, list(out_paths))
        # Only the split is needed from here: give back the column ids and what the
        # match's hash tables took (Arrow's allocator keeps freed memory otherwise, beside
        # the block buffers the write then takes).
        del rows, positions, instances
        matrix.col_ids = None
        pa.default_memory_pool().release_unused()
        written = _write_blocks(
            matrix,
            split,
            landmark_gene_ids,
            out_paths,
            row_group_rows=row_group_rows,
            budget_bytes=budget_bytes,
            compression=compression,
            write_threads=write_threads,
            progress=progress,
            t0=t0,
        )
    finally:
        matrix.close()
    return LandmarkIngestReport(
        release, written, split.controls_removed, time.perf_counter() - t0, report
    )


def write_landmark_profiles(
    release: ReleaseData,
    reconciliation: Reconciliation,
    out_paths: Mapping[str, Path],
    *,
    block_size: int = 8192,
    row_group_rows: int = 2048,
    budget_bytes: int = 96 << 20,
    compression: str | None = None,
    write_threads: int = 2,
    progress: Progress | None = None,
) -> LandmarkIngestReport:
    """:func:`write_landmark_profiles_from_metadata` for a release opened with
    :func:`open_release` and matched by :func:`reconcile`."""
    t0 = time.perf_counter()
    inst = reconciliation.instances
    instances = pa.Table.from_pandas(inst[INSTANCE_COLUMNS], preserve_index=False)
    instances = instances.replace_schema_metadata(None).cast(instance_schema())
    rows = np.arange(len(inst), dtype=np.int64)
    split = _split_cells(instances, rows, inst["position"].to_numpy(np.int64), list(out_paths))
    matrix = _open_landmarks(release.matrix_path, reconciliation.landmark_gene_ids, block_size)
    try:
        written = _write_blocks(
            matrix,
            split,
            reconciliation.landmark_gene_ids,
            out_paths,
            row_group_rows=row_group_rows,
            budget_bytes=budget_bytes,
            compression=compression,
            write_threads=write_threads,
            progress=progress,
            t0=t0,
        )
    finally:
        matrix.close()
    return LandmarkIngestReport(
        release.name,
        written,
        split.controls_removed,
        time.perf_counter() - t0,
        reconciliation.report(),
    )


def _write_blocks(
    matrix: _GctxLandmarks | _GctLandmarks,
    split: _CellSplit,
    gene_ids: Sequence[str],
    out_paths: Mapping[str, Path],
    *,
    row_group_rows: int,
    budget_bytes: int,
    compression: str | None,
    write_threads: int,
    progress: Progress | None,
    t0: float,
) -> dict[str, int]:
    """Read the blocks of the matrix that hold wanted profiles and hand each cell line's
    rows of a block to the writers, which write them to the file straight from the block.
    Blocks are read ahead while earlier ones are written, into at most
    ``max(2, budget_bytes // block bytes)`` buffers. Returns rows written per cell line."""
    cells = list(out_paths)
    writers = _CellWriters(
        out_paths,
        profile_schema(gene_ids),
        split.meta,
        row_group_rows=row_group_rows,
        compression=compression,
        threads=write_threads,
        matrix_path=matrix.path,
    )
    n_buffers = max(2, budget_bytes // max(1, matrix.block_bytes))
    held: deque[tuple[np.ndarray | None, list[Future]]] = deque()  # buffer, its jobs
    wanted = np.sort(split.positions)
    cursor = split.bounds[:-1].copy()  # per cell line: first row not yet handed over
    try:
        lo = 0
        while lo < len(wanted):
            start = int(wanted[lo]) // matrix.align * matrix.align
            hi = int(np.searchsorted(wanted, start + matrix.block_rows))
            stop = int(wanted[hi - 1]) + 1
            if len(held) == n_buffers:  # reuse the oldest buffer once it is written
                buffer, jobs = held.popleft()
                for job in jobs:
                    job.result()
            else:
                buffer = matrix.new_buffer()
            block = matrix.read(start, stop, buffer)
            jobs = []
            for k, cell in enumerate(cells):
                end = cursor[k] + int(
                    np.searchsorted(split.positions[cursor[k] : split.bounds[k + 1]], stop)
                )
                if end > cursor[k]:
                    jobs.append(
                        writers.add(
                            cell,
                            block,
                            split.positions[cursor[k] : end] - start,
                            matrix.columns,
                            split.rows[cursor[k] : end],
                        )
                    )
                    cursor[k] = end
            held.append((buffer, jobs))
            lo = hi
            if progress is not None:
                progress(lo, len(wanted), time.perf_counter() - t0)
        writers.close()
    except BaseException:
        writers.abort()
        raise
    return writers.written
