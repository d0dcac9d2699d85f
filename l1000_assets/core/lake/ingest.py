"""Release files -> the landmark Parquet lake.

:func:`write_landmark_profiles_from_metadata` writes the lake from the canonical metadata
tables (:func:`~l1000_assets.core.lake.read.read_canonical_instances`,
:func:`~l1000_assets.core.lake.read.read_canonical_landmarks`) and the matrix
(:func:`~l1000_assets.core.releases.local.find_matrix`), matched by
:func:`~l1000_assets.core.releases.reconcile.match_ids` (the matching ``reconcile`` does
too): it streams the landmark rows of the matrix in column blocks, drops controls and writes
one Parquet file per (cell line, release), with the landmark values as one
``fixed_size_list<float32>[978]`` column in canonical gene order.
:func:`write_landmark_profiles` does the same for a release opened with
:func:`~l1000_assets.core.releases.local.open_release` and reconciled.

Memory is bounded by the block size and the number of blocks read ahead; what grows with
the release is small: the metadata is held once, as Arrow, its text columns
dictionary-encoded (about 100 bytes a profile in all), plus two row numbers per profile;
the profile columns of the rows written are decoded a block at a time. The matrix is read
with :meth:`~l1000_assets.core.formats.matrix.MatrixReader.read_span` into a few reused
buffers. Two writers write the files, on background threads while the matrix is read:
``fast`` (the default) writes the landmark column chunk as plain Parquet pages, its values
copied from the block into a small reused page buffer and from there into the file
(:mod:`~l1000_assets.core.lake.parquet_pages`); ``pyarrow`` writes the whole file with
pyarrow's writer (:mod:`~l1000_assets.core.lake.parquet_arrow`), slower, and holding each
cell line's open row group, for when a Parquet change ever breaks the fast one.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.formats.matrix import MatrixReader, RowSpan, open_matrix
from l1000_assets.core.lake.parquet_arrow import ArrowLakeFile
from l1000_assets.core.lake.parquet_pages import CODECS, PageLakeFile
from l1000_assets.core.lake.read import compact_instances
from l1000_assets.core.lake.schema import (
    N_LANDMARKS,
    PROFILE_META_COLUMNS,
    VALUES_COLUMN,
    instance_schema,
    profile_schema,
)
from l1000_assets.core.progress import Progress
from l1000_assets.core.releases.local import ReleaseData
from l1000_assets.core.releases.reconcile import (
    STRICT,
    Reconciliation,
    check_on_bad_input,
    match_ids,
)
from l1000_assets.core.releases.schema import INSTANCE_COLUMNS
from l1000_assets.core.zscores import OVERRIDE, not_zscores

#: The lake file writers: ``fast`` (landmark pages written directly) and ``pyarrow``.
WRITERS = ("fast", "pyarrow")
#: Rows per row group when not given, per writer: the fast writer holds only a row group's
#: profile columns; pyarrow's holds its landmark values too, and is fastest at 8,192.
ROW_GROUP_ROWS = {"fast": 2048, "pyarrow": 8192}
#: What the open row groups of pyarrow's writer (one per cell line) hold together at most
#: when their size is not given: with many cell lines in one pass they get fewer rows.
PYARROW_OPEN_BYTES = 512 << 20
_PAGE_BYTES = 1 << 20  # landmark data page size, about (whole rows)
#: Samples of each block whose landmark values are checked to be z-scores (spread evenly).
ZSCORE_SAMPLES = 16

LakeFile = PageLakeFile | ArrowLakeFile


def _resolve_row_group_rows(writer: str, row_group_rows: int | None, n_cells: int) -> int:
    """``row_group_rows``, or the writer's default for ``n_cells`` files written at once;
    raises ``ValueError`` for an unknown writer."""
    if writer not in WRITERS:
        raise ValueError(f"writer must be one of {list(WRITERS)}, not {writer!r}")
    if row_group_rows is not None:
        return row_group_rows
    if writer == "pyarrow":
        held = PYARROW_OPEN_BYTES // (max(1, n_cells) * N_LANDMARKS * 4)
        return max(1, min(ROW_GROUP_ROWS[writer], held))
    return ROW_GROUP_ROWS[writer]


# --------------------------------------------------------------------------------------
# The per-cell-line split of the matched profiles
# --------------------------------------------------------------------------------------
def _one_chunk(column: pa.ChunkedArray) -> pa.Array:
    """``column`` as one array, without a copy when it is one chunk already."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _codes(column: pa.ChunkedArray, values: Sequence[str]) -> NDArray[np.integer]:
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
    rows: NDArray[np.integer]
    positions: NDArray[np.integer]
    bounds: NDArray[np.intp]
    controls_removed: dict[str, int]


def _split_cells(
    instances: pa.Table,
    rows: NDArray[np.integer],
    positions: NDArray[np.integer],
    cells: Sequence[str],
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
    hands its rows to the file in pages of about 1 MB: each page's values are gathered from
    the block into a page buffer of the thread's own, checked for NaN and inf and written
    from there (the fast writer) or copied into the open row group (pyarrow's). For the
    fast writer the gather is the only copy of the values outside HDF5 and the kernel,
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
        writer: str,
        threads: int,
        matrix_path: Path,
    ):
        self._paths = dict(paths)
        self._schema = schema
        self._source = meta
        self._meta_schema = pa.schema([f for f in schema if f.name != VALUES_COLUMN])
        self._compression = (compression or "none").lower()
        if self._compression not in CODECS:
            raise ValueError(f"compression must be one of {sorted(CODECS)}, not {compression!r}")
        self._kind = writer
        self._matrix_path = matrix_path
        self._row_group_rows = max(1, row_group_rows)
        self._page_rows = max(1, min(self._row_group_rows, _PAGE_BYTES // (N_LANDMARKS * 4)))
        for path in self._paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        self._meta: dict[str, list[pa.RecordBatch]] = {c: [] for c in self._paths}
        self._grouped = dict.fromkeys(self._paths, 0)  # rows in the open row group
        self._last: dict[str, Future] = {}
        self._writers: dict[str, LakeFile] = {}
        self._scratch = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="lake-writer")
        self.written = dict.fromkeys(self._paths, 0)

    def add(
        self,
        cell: str,
        block: NDArray[np.float32],
        rows: NDArray[np.integer],
        columns: slice | NDArray[np.int64],
        meta_rows: NDArray[np.integer],
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
            writer.abort()

    def _writer(self, cell: str) -> LakeFile:
        if cell not in self._writers:
            # Float z-scores barely compress (snappy: 1.2 % smaller), and dictionary
            # encoding or min/max statistics over 978 floats a row buy nothing: only the
            # profile columns get them.
            path, schema = self._paths[cell], self._schema
            if self._kind == "pyarrow":
                self._writers[cell] = ArrowLakeFile(
                    path,
                    schema,
                    self._compression,
                    PROFILE_META_COLUMNS,
                    row_group_rows=self._row_group_rows,
                    data_page_size=self._page_rows * N_LANDMARKS * 4,
                )
            else:
                self._writers[cell] = PageLakeFile(
                    path, schema, self._compression, PROFILE_META_COLUMNS
                )
        return self._writers[cell]

    def _job(
        self,
        cell: str,
        block: NDArray[np.float32],
        rows: NDArray[np.integer],
        columns: slice | NDArray[np.int64],
        meta_rows: NDArray[np.integer],
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
            writer.write_page(values)
            self._meta[cell].append(meta.slice(done, n))
            self._grouped[cell] += n
            done += n
            if self._grouped[cell] == self._row_group_rows:
                writer.end_row_group(pa.concat_batches(self._meta[cell]))
                self._meta[cell], self._grouped[cell] = [], 0
        self.written[cell] += len(rows)
        _drop_behind(writer.fileno(), writer.position)

    def _page_values(
        self,
        block: NDArray[np.float32],
        rows: NDArray[np.integer],
        columns: slice | NDArray[np.int64],
    ) -> NDArray[np.float32] | None:
        """The values of ``block[rows]``'s landmark ``columns`` gathered into this
        thread's page buffer (``len(rows) x 978``), or None if any is NaN or inf.

        The page buffer is small and reused, so it stays in the CPU cache between the copy
        and the write that reads it (cheaper in CPU than handing the kernel each row of the
        block as a piece of its own).
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
        return out


def _check_zscores(
    matrix: MatrixReader, block: NDArray[np.float32], span: RowSpan, start: int
) -> None:
    """Refuse the matrix if :data:`ZSCORE_SAMPLES` samples of ``block`` (the matrix's
    samples from ``start``), spread evenly, plainly are not z-scores over their landmarks."""
    step = max(1, len(block) // ZSCORE_SAMPLES)
    sample = block[::step][:, span.index]
    found = not_zscores(sample[np.isfinite(sample)].reshape(1, -1))
    if found:
        ids = matrix.col_ids[start : start + len(block) : step][:3].tolist()
        raise L1000InputError(
            matrix.path,
            f"not level-4 z-scores: the samples from {ids[0]!r} on ({len(sample)} checked: "
            f"{preview_ids(ids, 3)}...) have {' and '.join(found)}; level-4 values are "
            "robust z-scores against the plate "
            f"population (level 3, counts and other platforms are not): convert them to "
            f"z-scores first, or set {OVERRIDE} to ingest them anyway",
        )


def _drop_behind(fd: int, end: int) -> None:
    """Start writing the cached pages of file ``fd`` before byte ``end`` to disk and drop
    those already written.

    The lake is written once and not read back during the ingest, so its pages need not
    stay cached: dropping them lets the next row groups reuse the memory instead of taking
    fresh pages, which cost a fault and zeroing each, far more on a VM that returns free
    memory to its host. Linux starts the writeback without waiting for it; pages still
    under writeback are dropped by a later call.

    The page holding ``end`` is kept: the next row group is appended to it, and once
    dropped it would have to be read back from disk first, a wait of its own.
    """
    whole = end // mmap.PAGESIZE * mmap.PAGESIZE
    if whole and hasattr(os, "posix_fadvise"):  # not on macOS or Windows
        os.posix_fadvise(fd, 0, whole, os.POSIX_FADV_DONTNEED)


@dataclass(frozen=True)
class LandmarkIngestReport:
    """What an ingest wrote, per cell line; ``reconciliation`` as
    :meth:`~l1000_assets.core.releases.reconcile.IdMatch.report` (non-zero counts only in
    ``skip`` mode)."""

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
    row_group_rows: int | None = None,
    budget_bytes: int = 96 << 20,
    compression: str | None = None,
    writer: str = "fast",
    write_threads: int = 2,
    allow_non_zscores: bool = False,
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
        Rows per Parquet row group; default :data:`ROW_GROUP_ROWS` of the writer (for
        pyarrow's, fewer when the cell lines' open row groups would hold more than
        :data:`PYARROW_OPEN_BYTES`). Memory: the fast writer holds only their profile
        columns, pyarrow's their landmark values too (about 3.9 KB a row per cell line).
    budget_bytes
        Bound on the blocks held, read ahead while earlier ones are written: at most
        ``max(2, budget_bytes // block bytes)``.
    compression
        Parquet compression codec of every column (``none``, ``snappy``, ``gzip``,
        ``brotli``, ``zstd``, ``lz4``); None writes them uncompressed.
    writer
        ``fast``: the landmark pages written directly
        (:class:`~l1000_assets.core.lake.parquet_pages.PageLakeFile`); ``pyarrow``:
        pyarrow's own writer (:class:`~l1000_assets.core.lake.parquet_arrow.ArrowLakeFile`).
        Both files read back the same.
    write_threads
        Threads writing Parquet while the matrix is read.
    allow_non_zscores
        Ingest a matrix that plainly is not level-4 z-scores
        (:func:`~l1000_assets.core.zscores.not_zscores` of :data:`ZSCORE_SAMPLES` samples of
        each block: no negative value, only whole numbers, or a median far from 0) instead
        of refusing it.
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
        truncated matrix, a non-finite value in a written profile, or values that are not
        z-scores (unless ``allow_non_zscores``).
    """
    check_on_bad_input(on_bad_input)
    row_group_rows = _resolve_row_group_rows(writer, row_group_rows, len(out_paths))
    t0 = time.perf_counter()
    matrix_path, metadata_path = Path(matrix_path), Path(metadata_path)
    instances = compact_instances(instances)
    with open_matrix(matrix_path) as matrix:
        rows = matrix.row_positions(landmark_gene_ids)
        match = match_ids(
            _one_chunk(instances.column("inst_id")),
            matrix.col_id_array(),
            on_bad_input=on_bad_input,
            matrix_path=matrix_path,
            metadata_path=metadata_path,
        )
        split = _split_cells(instances, match.rows, match.positions, list(out_paths))
        report = match.report()
        # Only the split is needed from here: give back the column ids and what the
        # match's hash tables took (Arrow's allocator keeps freed memory otherwise, beside
        # the block buffers the write then takes).
        del match, instances
        pa.default_memory_pool().release_unused()
        written = _write_blocks(
            matrix,
            rows,
            split,
            landmark_gene_ids,
            out_paths,
            block_size=block_size,
            row_group_rows=row_group_rows,
            budget_bytes=budget_bytes,
            compression=compression,
            writer=writer,
            write_threads=write_threads,
            allow_non_zscores=allow_non_zscores,
            progress=progress,
            t0=t0,
        )
    return LandmarkIngestReport(
        release, written, split.controls_removed, time.perf_counter() - t0, report
    )


def write_landmark_profiles(
    release: ReleaseData,
    reconciliation: Reconciliation,
    out_paths: Mapping[str, Path],
    *,
    block_size: int = 8192,
    row_group_rows: int | None = None,
    budget_bytes: int = 96 << 20,
    compression: str | None = None,
    writer: str = "fast",
    write_threads: int = 2,
    allow_non_zscores: bool = False,
    progress: Progress | None = None,
) -> LandmarkIngestReport:
    """:func:`write_landmark_profiles_from_metadata` for a release opened with
    :func:`open_release` and matched by :func:`reconcile`."""
    row_group_rows = _resolve_row_group_rows(writer, row_group_rows, len(out_paths))
    t0 = time.perf_counter()
    inst = reconciliation.instances
    instances = pa.Table.from_pandas(inst[INSTANCE_COLUMNS], preserve_index=False)
    instances = instances.replace_schema_metadata(None).cast(instance_schema())
    rows = np.arange(len(inst), dtype=np.int64)
    split = _split_cells(instances, rows, inst["position"].to_numpy(np.int64), list(out_paths))
    with release.open_matrix() as matrix:
        written = _write_blocks(
            matrix,
            reconciliation.landmark_rows,
            split,
            reconciliation.landmark_gene_ids,
            out_paths,
            block_size=block_size,
            row_group_rows=row_group_rows,
            budget_bytes=budget_bytes,
            compression=compression,
            writer=writer,
            write_threads=write_threads,
            allow_non_zscores=allow_non_zscores,
            progress=progress,
            t0=t0,
        )
    return LandmarkIngestReport(
        release.name,
        written,
        split.controls_removed,
        time.perf_counter() - t0,
        reconciliation.report(),
    )


def _write_blocks(
    matrix: MatrixReader,
    landmark_rows: NDArray[np.int64],
    split: _CellSplit,
    gene_ids: Sequence[str],
    out_paths: Mapping[str, Path],
    *,
    block_size: int,
    row_group_rows: int,
    budget_bytes: int,
    compression: str | None,
    writer: str,
    write_threads: int,
    allow_non_zscores: bool,
    progress: Progress | None,
    t0: float,
) -> dict[str, int]:
    """Read the blocks of the matrix that hold wanted profiles and hand each cell line's
    rows of a block to the writers, which write them to the file straight from the block.

    Blocks span the landmark rows' chunks (:meth:`MatrixReader.row_span`) and whole sample
    chunks (:meth:`MatrixReader.aligned_blocks`), and are read ahead while earlier ones are
    written, into at most ``max(2, budget_bytes // block bytes)`` reused buffers. Returns
    rows written per cell line."""
    cells = list(out_paths)
    writers = _CellWriters(
        out_paths,
        profile_schema(gene_ids),
        split.meta,
        row_group_rows=row_group_rows,
        compression=compression,
        writer=writer,
        threads=write_threads,
        matrix_path=matrix.path,
    )
    span: RowSpan = matrix.row_span(landmark_rows)
    align, block_samples = matrix.aligned_blocks(block_size)
    buffer_shape = (min(block_samples, matrix.shape[1]), span.width)
    n_buffers = max(2, budget_bytes // max(1, buffer_shape[0] * buffer_shape[1] * 4))
    held: deque[tuple[NDArray[np.float32], list[Future]]] = deque()  # buffer, its jobs
    wanted = np.sort(split.positions)
    cursor = split.bounds[:-1].copy()  # per cell line: first row not yet handed over
    try:
        lo = 0
        while lo < len(wanted):
            start = int(wanted[lo]) // align * align
            hi = int(np.searchsorted(wanted, start + block_samples))
            stop = int(wanted[hi - 1]) + 1
            if len(held) == n_buffers:  # reuse the oldest buffer once it is written
                buffer, jobs = held.popleft()
                for job in jobs:
                    job.result()
            else:
                buffer = np.empty(buffer_shape, np.float32)
            block = matrix.read_span(start, stop, span, buffer)
            if not allow_non_zscores:
                _check_zscores(matrix, block, span, start)
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
                            span.index,
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
