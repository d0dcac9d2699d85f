"""Release files -> canonical metadata tables and the landmark Parquet lake.

* :func:`open_release` reads a release directory (GCTX or GCT text matrix plus metadata
  tables, or metadata embedded in the GCT) into canonical metadata and a matrix source.
* :func:`reconcile` checks that matrix and metadata describe the same profiles and genes;
  ``strict`` raises on any disagreement, ``skip`` drops the offending ids and reports them.
* :func:`write_landmark_profiles_from_metadata` writes the lake from the canonical
  metadata tables (:func:`read_canonical_instances`, :func:`read_canonical_landmarks`) and
  the matrix (:func:`find_matrix`), matching them as :func:`reconcile` does: it streams the
  landmark rows of the matrix in column blocks, drops controls and writes one Parquet file
  per (cell line, release), with the landmark values as one ``fixed_size_list<float32>[978]``
  column in canonical gene order. :func:`write_landmark_profiles` does the same for a
  release opened with :func:`open_release`.

Memory is bounded by the block size and the number of blocks read ahead; what grows with
the release is small: the metadata is held once, as Arrow, its text columns
dictionary-encoded (about 100 bytes a profile in all), plus two row numbers per profile;
the profile columns of the rows written are decoded a block at a time. The landmark
column chunk is written as plain Parquet pages, its values copied from the block into a
small reused page buffer and from there into the file (see :class:`_LakeFile`), on
background threads while the matrix is read.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.gct import read_gct
from l1000_assets.core.gctx import (COL_IDS_NODE, MATRIX_NODE, ROW_IDS_NODE, GctxReader,
                                    decode_strings)
from l1000_assets.core.metadata import read_info_table
from l1000_assets.core.release import find_release_files
from l1000_assets.core import sources

N_LANDMARKS = 978
VALUES_COLUMN = "landmarks"
GENE_IDS_KEY = b"l1000.landmark_gene_ids"
PROFILE_META_COLUMNS = [c for c in sources.INSTANCE_COLUMNS if c != "profile_class"]
STRICT, SKIP = "strict", "skip"


# --------------------------------------------------------------------------------------
# Matrix sources: GCTX (streamed from disk) or GCT text (small, parsed whole)
# --------------------------------------------------------------------------------------
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
            self.row_ids = meta["pr_gene_id"].astype(str).str.replace(r"\.0$", "", regex=True).to_numpy()
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
            raise L1000InputError(self.path, f"{len(missing)} requested row id(s) are not in "
                                             f"the file: {preview_ids(missing)}")
        return np.array([self._index[r] for r in row_ids], dtype=np.int64)


@dataclass
class ReleaseData:
    """A release opened for ingest: canonical metadata plus a matrix to stream."""

    name: str
    matrix_path: Path
    instances: pd.DataFrame
    genes: pd.DataFrame
    perturbagens: pd.DataFrame
    cell_lines: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)

    def open_matrix(self):
        if self.matrix_path.suffix == ".gct":
            return GctMatrixSource(self.matrix_path)
        return GctxReader(self.matrix_path)


def _find_gct(root: Path) -> Path | None:
    gcts = sorted(p for p in root.iterdir() if p.suffix == ".gct" and not p.name.startswith("."))
    if len(gcts) > 1:
        raise L1000InputError(root, f"several GCT files: {preview_ids(p.name for p in gcts)}")
    return gcts[0] if gcts else None


def open_release(name: str, root: str | Path, files: dict[str, str] | None = None) -> ReleaseData:
    """Open the release in directory ``root`` and map its metadata to the canonical schema.

    ``files`` may name any of the roles (``level4``, ``inst_info``, ``gene_info``,
    ``pert_info``, ``cell_info``) explicitly, relative to ``root``; the rest are found by
    their GEO-style names. A directory holding a single ``.gct`` file is a GCT-text release
    whose metadata may be embedded in the GCT.
    """
    root = Path(root)
    files = {k: root / v for k, v in (files or {}).items()}
    if not root.is_dir():
        raise L1000InputError(root, "release directory not found")
    gct = files.get("level4") if files.get("level4", Path()).suffix == ".gct" else None
    if gct is None and "level4" not in files:
        gct = _find_gct(root)
    if gct is not None:
        return _open_gct_release(name, gct, files)
    found = find_release_files(root) if not {"level4", "inst_info", "gene_info"} <= set(files) \
        else None
    for role in ("level4", "inst_info", "gene_info", "pert_info", "cell_info"):
        if role not in files and found is not None and getattr(found, role) is not None:
            files[role] = getattr(found, role)
    for role, path in files.items():
        if not path.exists():
            raise L1000InputError(path, f"{role} file not found")
    inst_raw = read_info_table(files["inst_info"])
    instances = sources.canonical_instances(inst_raw, name, path=files["inst_info"])
    genes = sources.canonical_genes(read_info_table(files["gene_info"]), path=files["gene_info"])
    perts = (sources.canonical_perturbagens(read_info_table(files["pert_info"]), name,
                                            path=files["pert_info"])
             if "pert_info" in files else sources.perturbagens_from_instances(instances))
    cells = (sources.canonical_cell_lines(read_info_table(files["cell_info"]), name,
                                          path=files["cell_info"])
             if "cell_info" in files else sources.cell_lines_from_instances(instances))
    return ReleaseData(name, files["level4"], instances, genes, perts, cells, files)


def _open_gct_release(name: str, gct: Path, files: dict[str, Path]) -> ReleaseData:
    source = GctMatrixSource(gct)
    if "inst_info" in files:
        inst_raw = read_info_table(files["inst_info"])
    else:
        inst_raw = source.col_metadata.reset_index().astype("string")
        inst_raw = inst_raw.rename(columns={inst_raw.columns[0]: "inst_id"})
    instances = sources.canonical_instances(inst_raw, name, path=files.get("inst_info", gct))
    if "gene_info" in files:
        genes_raw = read_info_table(files["gene_info"])
    else:
        genes_raw = source.row_metadata.reset_index(drop=True).astype("string")
        if "pr_is_lm" not in genes_raw.columns and "pr_is_lmark" not in genes_raw.columns:
            genes_raw["pr_is_lm"] = "1"  # a 978-row GCT holds only landmarks
    genes = sources.canonical_genes(genes_raw, path=files.get("gene_info", gct))
    perts = sources.perturbagens_from_instances(instances)
    cells = sources.cell_lines_from_instances(instances)
    files = {**files, "level4": gct}
    return ReleaseData(name, gct, instances, genes, perts, cells, files)


# --------------------------------------------------------------------------------------
# Reconciliation of matrix ids and metadata ids
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reconciliation:
    """Metadata aligned to the matrix and what was dropped (only in ``skip`` mode)."""

    instances: pd.DataFrame          # one row per matrix column that has metadata, with `position`
    landmark_rows: np.ndarray        # matrix row positions of the 978 landmarks, canonical order
    landmark_gene_ids: list[str]
    n_matrix_columns: int
    profiles_without_metadata: list[str]
    metadata_without_profile: list[str]
    duplicate_inst_ids: list[str]

    def report(self) -> dict[str, object]:
        return {
            "n_matrix_columns": self.n_matrix_columns,
            "n_profiles_without_metadata": len(self.profiles_without_metadata),
            "n_metadata_rows_without_profile": len(self.metadata_without_profile),
            "n_duplicate_inst_ids": len(self.duplicate_inst_ids),
            "examples_without_metadata": preview_ids(self.profiles_without_metadata),
            "examples_without_profile": preview_ids(self.metadata_without_profile),
        }


def reconcile(release: ReleaseData, *, on_bad_input: str = STRICT) -> Reconciliation:
    """Align metadata with the matrix; raise (``strict``) or drop and report (``skip``)."""
    if on_bad_input not in (STRICT, SKIP):
        raise ValueError(f"on_bad_input must be {STRICT!r} or {SKIP!r}")
    inst = release.instances
    inst_path = release.files.get("inst_info", release.matrix_path)
    dup = inst["inst_id"][inst["inst_id"].duplicated()].unique().tolist()
    if dup and on_bad_input == STRICT:
        raise L1000InputError(inst_path, f"duplicate inst_id value(s): {preview_ids(dup)}")
    inst = inst.drop_duplicates("inst_id")
    with release.open_matrix() as matrix:
        col_ids = pd.Index(matrix.col_ids.astype(str))
        dup_cols = col_ids[col_ids.duplicated()].unique()
        if len(dup_cols):
            raise L1000InputError(release.matrix_path,
                                  f"duplicate column (sample) ids: {preview_ids(dup_cols)}")
        landmark_ids = release.genes.loc[release.genes["is_landmark"], "gene_id"].tolist()
        landmark_rows = matrix.row_positions(landmark_ids)  # names missing landmarks
    meta_ids = pd.Index(inst["inst_id"].astype(str))
    no_meta = col_ids.difference(meta_ids, sort=False).tolist()
    no_profile = meta_ids.difference(col_ids, sort=False).tolist()
    if on_bad_input == STRICT:
        if no_meta:
            raise L1000InputError(
                release.matrix_path, f"{len(no_meta)} profile(s) have no row in "
                f"{Path(inst_path).name}: {preview_ids(no_meta)}")
        if no_profile:
            raise L1000InputError(
                inst_path, f"{len(no_profile)} inst_id(s) have no column in "
                f"{release.matrix_path.name}: {preview_ids(no_profile)}")
    position = pd.Series(np.arange(len(col_ids)), index=col_ids)
    aligned = inst[inst["inst_id"].isin(col_ids)].copy()
    aligned["position"] = position.loc[aligned["inst_id"].astype(str)].to_numpy()
    aligned = aligned.sort_values("position").reset_index(drop=True)
    return Reconciliation(aligned, landmark_rows, landmark_ids, len(col_ids), no_meta,
                          no_profile, dup)


# --------------------------------------------------------------------------------------
# Canonical metadata tables, as written by release_metadata
# --------------------------------------------------------------------------------------
def _instance_schema() -> pa.Schema:
    return pa.schema([pa.field(c, pa.float64() if c in ("pert_dose", "pert_time")
                               else pa.string()) for c in sources.INSTANCE_COLUMNS])


#: Instance columns read dictionary-encoded: all but the unique ``inst_id`` and the numbers.
_DICTIONARY_COLUMNS = [c for c in sources.INSTANCE_COLUMNS
                       if c not in ("inst_id", "pert_dose", "pert_time")]


def read_canonical_instances(path: str | Path) -> pa.Table:
    """The canonical ``instances`` Parquet table as one compact Arrow table.

    Only the canonical columns are read, without the pandas metadata: ``inst_id`` as
    ``string``, ``pert_dose`` and ``pert_time`` as ``float64`` and the other columns as
    ``dictionary<int32, string>`` (few distinct values each: 4 bytes a row instead of the
    text). Parquet stores them dictionary-encoded, so they are read without building the
    text of every row, which would cost about 200 bytes a profile held, and twice that
    while reading.

    Raises
    ------
    L1000InputError
        If the file is missing or lacks a canonical column.
    """
    path = Path(path)
    if not path.exists():
        raise L1000InputError(path, "file not found")
    schema = _instance_schema()
    missing = [c for c in schema.names if c not in pq.read_schema(path).names]
    if missing:
        raise L1000InputError(path, f"instances: no column for {missing}")
    # One thread: the decoded row group is held only once (about a third of the peak).
    table = pq.ParquetFile(path, read_dictionary=_DICTIONARY_COLUMNS).read(
        columns=schema.names, use_threads=False)
    return _compact_instances(table)


def _compact_instances(table: pa.Table) -> pa.Table:
    """The canonical instance columns of ``table``, one chunk each: dictionary-encoded
    text columns stay so (values cast to ``string``), the others are cast to the canonical
    types (:func:`_instance_schema`)."""
    columns, fields = [], []
    for target in _instance_schema():
        column = table.column(target.name)
        kind = target.type
        if (pa.types.is_dictionary(column.type) and target.type == pa.string()
                and target.name != "inst_id"):
            kind = pa.dictionary(column.type.index_type, pa.string())
        columns.append(column if column.type == kind else column.cast(kind))
        fields.append(pa.field(target.name, kind))
    out = pa.table(columns, schema=pa.schema(fields))
    if any(c.num_chunks > 1 for c in out.columns):
        out = out.unify_dictionaries().combine_chunks()
    return out


def read_canonical_landmarks(path: str | Path) -> list[str]:
    """The landmark gene ids of the canonical ``genes`` Parquet table, in ``landmark_index``
    order (the column order of every profile vector in the lake).

    Raises
    ------
    L1000InputError
        If the file is missing or does not mark exactly 978 landmarks.
    """
    path = Path(path)
    if not path.exists():
        raise L1000InputError(path, "file not found")
    genes = pq.read_table(path, columns=["gene_id", "is_landmark", "landmark_index"])
    landmarks = genes.filter(pc.fill_null(genes["is_landmark"], False))
    if landmarks.num_rows != N_LANDMARKS:
        raise L1000InputError(path, f"genes: {landmarks.num_rows} landmark genes marked, "
                                    f"expected {N_LANDMARKS}")
    return landmarks.sort_by("landmark_index").column("gene_id").cast(pa.string()).to_pylist()


def find_matrix(root: str | Path, files: Mapping[str, str] | None = None) -> Path:
    """The level-4 matrix (GCTX or GCT text) of the release in ``root``, found as
    :func:`open_release` finds it but without reading any metadata table.

    ``files`` may name it as role ``level4``, relative to ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise L1000InputError(root, "release directory not found")
    if files and "level4" in files:
        path = root / files["level4"]
    else:
        path = _find_gct(root) or find_release_files(root).level4
    if not path.exists():
        raise L1000InputError(path, "level4 file not found")
    return path


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
                path, f"not a readable HDF5/GCTX file (truncated or corrupt?): {exc}") from exc
        try:
            missing = [n for n in (MATRIX_NODE, ROW_IDS_NODE, COL_IDS_NODE) if n not in self._h5]
            if missing:
                raise L1000InputError(
                    path, f"HDF5 file lacks the GCTX node(s) {', '.join(missing)}")
            self._matrix = self._h5[MATRIX_NODE]
            row_ids = decode_strings(self._h5[ROW_IDS_NODE][()])
            self.col_ids = _arrow_ids(self._h5[COL_IDS_NODE])
            if self._matrix.shape != (len(self.col_ids), len(row_ids)):
                raise L1000InputError(
                    path, f"id vectors ({len(row_ids)} row ids, {len(self.col_ids)} column ids) "
                          f"do not match the matrix (shape {self._matrix.shape}, samples x genes "
                          "on disk)")
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
            self._matrix.read_direct(out, np.s_[start:stop, self._lo:self._hi])
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


def _open_landmarks(path: Path, gene_ids: Sequence[str],
                    block_size: int) -> _GctxLandmarks | _GctLandmarks:
    if path.suffix == ".gct":
        return _GctLandmarks(path, gene_ids, block_size)
    if not path.exists():
        raise L1000InputError(path, "file not found")
    return _GctxLandmarks(path, gene_ids, block_size)


def _arrow_ids(dataset: h5py.Dataset, step: int = 1 << 15) -> pa.Array:
    """The HDF5 id strings of ``dataset`` as one Arrow string array, latin-1 where not
    UTF-8. Read ``step`` ids at a time: variable-length ids come as Python ``bytes``
    objects (about 80 bytes each), so only a slice of them is alive at once."""
    chunks = [_arrow_id_chunk(dataset[s:s + step]) for s in range(0, len(dataset), step)]
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
        raise L1000InputError(path, f"{len(missing)} requested row id(s) are not in the file: "
                                    f"{preview_ids(missing)}")
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
    return (preview_ids(ids.slice(0, limit).to_pylist(), limit)
            + (f" (and {more} more)" if more > 0 else ""))


def _duplicates(ids: pa.Array) -> pa.Array:
    counts = pa.table({"id": ids}).group_by("id", use_threads=False).aggregate([("id", "count")])
    return counts.filter(pc.greater(counts["id_count"], 1)).column("id").combine_chunks()


def _match(instances: pa.Table, col_ids: pa.Array, *, on_bad_input: str, matrix_path: Path,
           metadata_path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, object]]:
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
                matrix_path, f"{len(no_meta)} profile(s) have no row in {metadata_path.name}: "
                             f"{_preview(no_meta)}")
        if len(no_profile):
            raise L1000InputError(
                metadata_path, f"{len(no_profile)} inst_id(s) have no column in "
                               f"{matrix_path.name}: {_preview(no_profile)}")
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
    of_value = np.append(pc.index_in(array.dictionary, value_set=value_set)
                         .fill_null(-1).to_numpy(), -1)
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


def _split_cells(instances: pa.Table, rows: np.ndarray, positions: np.ndarray,
                 cells: Sequence[str]) -> _CellSplit:
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
    index = np.int32 if max(len(instances), len(positions) and int(positions.max()) + 1) \
        < 2**31 else np.int64
    return _CellSplit(meta, rows[keep].astype(index), positions[keep].astype(index), bounds,
                      {c: int(n) for c, n in zip(cells, removed)})


# --------------------------------------------------------------------------------------
# Landmark lake
# --------------------------------------------------------------------------------------
def profile_schema(gene_ids: Sequence[str]) -> pa.Schema:
    fields = [pa.field(c, pa.float64() if c in ("pert_dose", "pert_time") else pa.string())
              for c in PROFILE_META_COLUMNS]
    fields.append(pa.field(VALUES_COLUMN, pa.list_(pa.float32(), N_LANDMARKS)))
    return pa.schema(fields, metadata={GENE_IDS_KEY: json.dumps(list(gene_ids)).encode()})


# --------------------------------------------------------------------------------------
# Lake files: the profile columns encoded by Parquet, the landmark values written as they are
# --------------------------------------------------------------------------------------
# Parquet stores the fixed-size list as a LIST column: every one of the 978 values of a row
# carries a repetition and a definition level. Arrow's writer builds and encodes those
# levels value by value, about three quarters of the CPU an ingest spends writing. For a
# list that always holds 978 non-null floats they are the same few bytes for every row, so
# _LakeFile writes the landmark column chunk itself: PLAIN data pages (v1) of whole rows,
# the levels as RLE runs computed once per page length, the values straight from the
# buffer. The profile columns of each row group are encoded by Arrow's writer (dictionary,
# statistics) into memory and copied in, their offsets moved to where they land. The
# schema, Arrow schema and key-value metadata of the footer are those Arrow writes for the
# full schema, so every reader sees exactly the file Arrow's writer would make.
#
# Page headers and the footer are Thrift compact protocol structs, handled below as
# ``{field id: (compact type, value)}`` dicts: lists are ``(element type, [values])``,
# maps ``(key type, value type, [(k, v)])``. Decoding then encoding a struct gives back
# its bytes exactly.
_TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = \
    range(1, 13)
_INTS = (_I16, _I32, _I64)
# Parquet enum values used for the landmark column chunk.
_DATA_PAGE, _FLOAT, _PLAIN, _RLE = 0, 4, 0, 3
_REQUIRED, _OPTIONAL, _REPEATED = 0, 1, 2
# Codec names as pyarrow takes them -> (Parquet CompressionCodec, pyarrow.Codec name).
# Parquet's "LZ4" in pyarrow is the raw block format (LZ4_RAW).
_CODECS = {"none": (0, None), "snappy": (1, "snappy"), "gzip": (2, "gzip"),
           "brotli": (4, "brotli"), "zstd": (6, "zstd"), "lz4": (7, "lz4_raw")}
_PAGE_BYTES = 1 << 20  # landmark data page size, about (whole rows)
_IOV_MAX = 1024  # pieces one writev takes (POSIX allows no fewer than 16; Linux, macOS: 1024)


def _read_varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _thrift_read(buf, pos: int, t: int) -> tuple[object, int]:
    """Decode the compact-protocol value of type ``t`` at ``pos``: ``(value, next pos)``."""
    if t in _INTS:
        v, pos = _read_varint(buf, pos)
        return (v >> 1) ^ -(v & 1), pos
    if t == _BINARY:
        n, pos = _read_varint(buf, pos)
        return bytes(buf[pos:pos + n]), pos + n
    if t == _STRUCT:
        fields: dict[int, tuple[int, object]] = {}
        last = 0
        while True:
            h = buf[pos]
            pos += 1
            if h == 0:
                return fields, pos
            ft, delta = h & 0x0F, h >> 4
            if delta:
                fid = last + delta
            else:
                v, pos = _read_varint(buf, pos)
                fid = (v >> 1) ^ -(v & 1)
            if ft == _TRUE or ft == _FALSE:
                val: object = ft == _TRUE
            else:
                val, pos = _thrift_read(buf, pos, ft)
            fields[fid] = (ft, val)
            last = fid
    if t == _LIST or t == _SET:
        h = buf[pos]
        pos += 1
        n, et = h >> 4, h & 0x0F
        if n == 15:
            n, pos = _read_varint(buf, pos)
        items = []
        for _ in range(n):
            item, pos = _thrift_read(buf, pos, et)
            items.append(item)
        return (et, items), pos
    if t in (_TRUE, _FALSE, _BYTE):  # a bool in a list is one byte, kept as it is
        return buf[pos], pos + 1
    if t == _DOUBLE:
        return struct.unpack_from("<d", buf, pos)[0], pos + 8
    if t == _MAP:
        n, pos = _read_varint(buf, pos)
        if n == 0:
            return (0, 0, []), pos
        kt, vt = buf[pos] >> 4, buf[pos] & 0x0F
        pos += 1
        pairs = []
        for _ in range(n):
            k, pos = _thrift_read(buf, pos, kt)
            v, pos = _thrift_read(buf, pos, vt)
            pairs.append((k, v))
        return (kt, vt, pairs), pos
    raise ValueError(f"Thrift compact type {t}")


def _write_varint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _thrift_write(out: bytearray, t: int, v) -> None:
    """Append the compact-protocol encoding of ``v`` (of type ``t``) to ``out``."""
    if t in _INTS:
        _write_varint((v << 1) ^ (v >> 63), out)
    elif t == _BINARY:
        _write_varint(len(v), out)
        out += v
    elif t == _STRUCT:
        last = 0
        for fid in sorted(v):
            ft, val = v[fid]
            if ft == _TRUE or ft == _FALSE:
                ft = _TRUE if val else _FALSE
            if 0 < fid - last <= 15:
                out.append((fid - last) << 4 | ft)
            else:
                out.append(ft)
                _write_varint((fid << 1) ^ (fid >> 63), out)
            if ft != _TRUE and ft != _FALSE:
                _thrift_write(out, ft, val)
            last = fid
        out.append(0)
    elif t == _LIST or t == _SET:
        et, items = v
        if len(items) < 15:
            out.append(len(items) << 4 | et)
        else:
            out.append(0xF0 | et)
            _write_varint(len(items), out)
        for item in items:
            _thrift_write(out, et, item)
    elif t in (_TRUE, _FALSE, _BYTE):
        out.append(v & 0xFF)
    elif t == _DOUBLE:
        out += struct.pack("<d", v)
    elif t == _MAP:
        kt, vt, pairs = v
        _write_varint(len(pairs), out)
        if pairs:
            out.append(kt << 4 | vt)
            for k, val in pairs:
                _thrift_write(out, kt, k)
                _thrift_write(out, vt, val)
    else:
        raise ValueError(f"Thrift compact type {t}")


def _thrift_struct(fields: dict) -> bytes:
    out = bytearray()
    _thrift_write(out, _STRUCT, fields)
    return bytes(out)


def _parquet_footer(buf) -> tuple[dict, int]:
    """The decoded FileMetaData of the Parquet file in ``buf``, and the offset where it starts."""
    n = struct.unpack_from("<i", buf, len(buf) - 8)[0]
    start = len(buf) - 8 - n
    meta, _ = _thrift_read(buf, start, _STRUCT)
    return meta, start


def _rle_run(count: int, value: int) -> bytes:
    """One run of the RLE/bit-packing hybrid: ``count`` times ``value`` (bit width <= 8)."""
    out = bytearray()
    _write_varint(count << 1, out)
    out.append(value)
    return bytes(out)


def _shift_offsets(chunk: dict, shift: int) -> None:
    """Move a ColumnChunk's file offsets by ``shift`` bytes."""
    meta = chunk[3][1]
    for fid in (9, 10, 11, 14):  # data, index and dictionary page, bloom filter
        if fid in meta:
            meta[fid] = (meta[fid][0], meta[fid][1] + shift)
    for fid in (4, 6):  # offset index, column index
        if fid in chunk:
            chunk[fid] = (chunk[fid][0], chunk[fid][1] + shift)


class _LakeFile:
    """One lake Parquet file, written page by page and row group by row group; see the
    comment above.

    Each row group is written as its landmark column chunk (:meth:`write_page`, whole rows
    a page) followed by its profile columns (:meth:`end_row_group`); the footer lists the
    chunks in schema order, with their offsets.
    """

    def __init__(self, path: Path, schema: pa.Schema, compression: str,
                 dictionary_columns: Sequence[str]):
        self._codec_id, name = _CODECS[compression]
        self._codec = pa.Codec(name) if name else None
        self._compression = compression
        self._dictionary_columns = list(dictionary_columns)
        # Only the row group is kept from the files the profile columns are encoded into.
        self._meta_schema = pa.schema([f for f in schema if f.name != VALUES_COLUMN])
        sink = pa.BufferOutputStream()
        pq.ParquetWriter(sink, schema, compression=compression).close()
        self._footer, _ = _parquet_footer(sink.getvalue())
        elements = self._footer[2][1][1]
        names = [e[4][1] for e in elements]
        lm = names.index(VALUES_COLUMN.encode())
        if names[lm + 1:] != [b"list", b"element"] or elements[lm + 2][1][1] != _FLOAT:
            raise ValueError(f"{VALUES_COLUMN!r} must be the last column, a list of float32")
        self._path = names[lm:]
        # Every value is defined (non-null): the deepest definition level.
        self._max_def = sum(e[3][1] != _REQUIRED for e in elements[lm:])
        self._row_rep = _rle_run(1, 0) + _rle_run(N_LANDMARKS - 1, 1)  # list start, then 977
        self._levels: dict[int, bytes] = {}
        self._row_groups: list[dict] = []
        self._rows = 0
        self._group_rows = self._pages = self._uncompressed = 0
        self._group_start = 0
        self.file = open(path, "wb", buffering=0)
        self.position = 0
        self._put([b"PAR1"])

    def _put(self, parts: Sequence) -> None:
        """Append ``parts`` (bytes-like objects) to the file."""
        size = sum(len(p) for p in parts) if len(parts) > 1 else -1
        if size > 0 and hasattr(os, "writev") and len(parts) <= _IOV_MAX:
            written = os.writev(self.file.fileno(), parts)
            self.position += written
            if written == size:
                return
            # A partial write (rare): write the rest piece by piece.
            parts = [memoryview(b"".join(parts))[written:]]
        for part in parts:
            view = memoryview(part).cast("B")
            while view:
                n = self.file.write(view)
                self.position += n
                view = view[n:]

    def _page_levels(self, rows: int) -> bytes:
        """Repetition then definition levels of a page of ``rows`` rows (v1: each
        prefixed with its length)."""
        if rows not in self._levels:
            rep = self._row_rep * rows
            dfn = _rle_run(rows * N_LANDMARKS, self._max_def)
            self._levels[rows] = (struct.pack("<i", len(rep)) + rep
                                  + struct.pack("<i", len(dfn)) + dfn)
        return self._levels[rows]

    def write_page(self, rows: int, values: Sequence) -> None:
        """Append a data page of ``rows`` rows to the current row group's landmark chunk;
        ``values``: bytes-like pieces holding their ``rows x 978`` float32 values in order."""
        if self._group_rows == 0:
            self._group_start = self.position
        levels = self._page_levels(rows)
        size = len(levels) + rows * N_LANDMARKS * 4
        if self._codec is None:
            payload = [levels, *values]
            compressed = size
        else:
            payload = [self._codec.compress(b"".join([levels, *values]), asbytes=True)]
            compressed = len(payload[0])
        header = _thrift_struct({
            1: (_I32, _DATA_PAGE), 2: (_I32, size), 3: (_I32, compressed),
            5: (_STRUCT, {1: (_I32, rows * N_LANDMARKS), 2: (_I32, _PLAIN),
                          3: (_I32, _RLE), 4: (_I32, _RLE)})})
        self._put([header, *payload])
        self._uncompressed += len(header) + size
        self._pages += 1
        self._group_rows += rows

    def end_row_group(self, meta: pa.RecordBatch) -> None:
        """Write the profile columns ``meta`` of the rows paged since the last row group
        and close the row group."""
        n = self._group_rows
        if meta.num_rows != n:
            raise ValueError(f"{meta.num_rows} profile rows for {n} landmark rows")
        landmarks = {2: (_I64, 0), 3: (_STRUCT, {
            1: (_I32, _FLOAT), 2: (_LIST, (_I32, [_PLAIN, _RLE])),
            3: (_LIST, (_BINARY, self._path)), 4: (_I32, self._codec_id),
            5: (_I64, n * N_LANDMARKS), 6: (_I64, self._uncompressed),
            7: (_I64, self.position - self._group_start), 9: (_I64, self._group_start),
            13: (_LIST, (_STRUCT, [{1: (_I32, _DATA_PAGE), 2: (_I32, _PLAIN),
                                    3: (_I32, self._pages)}]))})}
        sink = pa.BufferOutputStream()
        with pq.ParquetWriter(sink, self._meta_schema, compression=self._compression,
                              use_dictionary=self._dictionary_columns,
                              write_statistics=self._dictionary_columns,
                              store_schema=False) as writer:
            writer.write_batch(meta, row_group_size=max(n, 1))
        encoded = sink.getvalue()
        small, end = _parquet_footer(encoded)
        if len(small[4][1][1]) != 1:
            raise ValueError("profile columns not in one row group")
        columns = small[4][1][1][0][1][1][1]
        for chunk in columns:
            _shift_offsets(chunk, self.position - 4)  # they land here, not after "PAR1"
        self._put([encoded.slice(4, end - 4)])
        columns.append(landmarks)
        self._row_groups.append({
            1: (_LIST, (_STRUCT, columns)),
            2: (_I64, sum(c[3][1][6][1] for c in columns)), 3: (_I64, n),
            5: (_I64, self._group_start), 6: (_I64, self.position - self._group_start),
            7: (_I16, len(self._row_groups))})
        self._rows += n
        self._group_rows = self._pages = self._uncompressed = 0

    def close(self) -> None:
        """Write the footer and close the file."""
        footer = dict(self._footer)
        footer[3] = (_I64, self._rows)
        footer[4] = (_LIST, (_STRUCT, self._row_groups))
        encoded = _thrift_struct(footer)
        self._put([encoded, struct.pack("<i", len(encoded)), b"PAR1"])
        self.file.close()


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

    def __init__(self, paths: Mapping[str, Path], schema: pa.Schema, meta: pa.RecordBatch, *,
                 row_group_rows: int, compression: str | None, threads: int,
                 matrix_path: Path):
        self._paths = dict(paths)
        self._schema = schema
        self._source = meta
        self._meta_schema = pa.schema([f for f in schema if f.name != VALUES_COLUMN])
        self._compression = (compression or "none").lower()
        if self._compression not in _CODECS:
            raise ValueError(f"compression must be one of {sorted(_CODECS)}, "
                             f"not {compression!r}")
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

    def add(self, cell: str, block: np.ndarray, rows: np.ndarray,
            columns: slice | np.ndarray, meta_rows: np.ndarray) -> Future:
        """Write ``block[rows]``'s landmark ``columns`` to ``cell``'s file, with the
        profile columns of rows ``meta_rows`` of ``meta``; the block must stay as it is
        until the job is done."""
        future = self._pool.submit(self._job, cell, block, rows, columns, meta_rows,
                                   self._last.get(cell))
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
            self._writers[cell] = _LakeFile(self._paths[cell], self._schema,
                                            self._compression, PROFILE_META_COLUMNS)
        return self._writers[cell]

    def _job(self, cell: str, block: np.ndarray, rows: np.ndarray,
             columns: slice | np.ndarray, meta_rows: np.ndarray,
             previous: Future | None) -> None:
        # The profile columns of these rows only, as text: dictionary-encoded columns are
        # decoded a block at a time, not held decoded for the whole release.
        meta = self._source.take(meta_rows).cast(self._meta_schema)
        # The pool starts jobs in submission order, so `previous` is running or done here.
        if previous is not None:
            previous.result()
        writer = self._writer(cell)
        done = 0
        while done < len(rows):
            n = min(len(rows) - done, self._page_rows,
                    self._row_group_rows - self._grouped[cell])
            page = rows[done:done + n]
            values = self._page_values(block, page, columns)
            if values is None:
                bad = int(np.flatnonzero(~np.isfinite(block[page][:, columns]).all(axis=1))[0])
                raise L1000InputError(self._matrix_path, "non-finite values (NaN or inf) in "
                                      f"sample {meta.column('inst_id')[done + bad].as_py()!r}")
            writer.write_page(n, [values])
            self._meta[cell].append(meta.slice(done, n))
            self._grouped[cell] += n
            done += n
            if self._grouped[cell] == self._row_group_rows:
                writer.end_row_group(pa.concat_batches(self._meta[cell]))
                self._meta[cell], self._grouped[cell] = [], 0
        self.written[cell] += len(rows)
        _drop_behind(writer.file, writer.position)

    def _page_values(self, block: np.ndarray, rows: np.ndarray,
                     columns: slice | np.ndarray) -> memoryview | None:
        """The values of ``block[rows]``'s landmark ``columns`` gathered into this
        thread's page buffer, as bytes, or None if any is NaN or inf.

        The page buffer is small and reused, so it stays in the CPU cache between the copy
        and the write that reads it (cheaper than handing the kernel each row of the block
        as a piece of its own: 0.08 s instead of 0.13 s of CPU per 200,000 profiles).
        """
        scratch = getattr(self._scratch, "values", None)
        if scratch is None:
            scratch = self._scratch.values = np.empty((self._page_rows, N_LANDMARKS),
                                                      np.float32)
        out = scratch[:len(rows)]
        if isinstance(columns, slice):
            breaks = np.flatnonzero(np.diff(rows) != 1) + 1
            # Runs (profiles of one plate) are long in practice; a temporary beats a
            # Python loop over very short ones.
            if len(breaks) * 16 < len(rows):
                for s, e in zip([0, *breaks.tolist()], [*breaks.tolist(), len(rows)]):
                    out[s:e] = block[rows[s]:rows[e - 1] + 1, columns]
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
        return sum(int(self.reconciliation.get(k, 0)) for k in (
            "n_profiles_without_metadata", "n_metadata_rows_without_profile",
            "n_duplicate_inst_ids"))


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
    progress: Callable[[int, int, float], None] | None = None,
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
        rows, positions, report = _match(instances, matrix.col_ids, on_bad_input=on_bad_input,
                                         matrix_path=matrix_path, metadata_path=metadata_path)
        split = _split_cells(instances, rows, positions, list(out_paths))
        # Only the split is needed from here: give back the column ids and what the
        # match's hash tables took (Arrow's allocator keeps freed memory otherwise, beside
        # the block buffers the write then takes).
        del rows, positions, instances
        matrix.col_ids = None
        pa.default_memory_pool().release_unused()
        written = _write_blocks(matrix, split, landmark_gene_ids, out_paths,
                                row_group_rows=row_group_rows,
                                budget_bytes=budget_bytes, compression=compression,
                                write_threads=write_threads, progress=progress, t0=t0)
    finally:
        matrix.close()
    return LandmarkIngestReport(release, written, split.controls_removed,
                                time.perf_counter() - t0, report)


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
    progress: Callable[[int, int, float], None] | None = None,
) -> LandmarkIngestReport:
    """:func:`write_landmark_profiles_from_metadata` for a release opened with
    :func:`open_release` and matched by :func:`reconcile`."""
    t0 = time.perf_counter()
    inst = reconciliation.instances
    instances = pa.Table.from_pandas(inst[sources.INSTANCE_COLUMNS], preserve_index=False)
    instances = instances.replace_schema_metadata(None).cast(_instance_schema())
    rows = np.arange(len(inst), dtype=np.int64)
    split = _split_cells(instances, rows, inst["position"].to_numpy(np.int64), list(out_paths))
    matrix = _open_landmarks(release.matrix_path, reconciliation.landmark_gene_ids, block_size)
    try:
        written = _write_blocks(matrix, split, reconciliation.landmark_gene_ids, out_paths,
                                row_group_rows=row_group_rows,
                                budget_bytes=budget_bytes, compression=compression,
                                write_threads=write_threads, progress=progress, t0=t0)
    finally:
        matrix.close()
    return LandmarkIngestReport(release.name, written, split.controls_removed,
                                time.perf_counter() - t0, reconciliation.report())


def _write_blocks(matrix: _GctxLandmarks | _GctLandmarks, split: _CellSplit,
                  gene_ids: Sequence[str], out_paths: Mapping[str, Path], *,
                  row_group_rows: int, budget_bytes: int, compression: str | None,
                  write_threads: int, progress: Callable[[int, int, float], None] | None,
                  t0: float) -> dict[str, int]:
    """Read the blocks of the matrix that hold wanted profiles and hand each cell line's
    rows of a block to the writers, which write them to the file straight from the block.
    Blocks are read ahead while earlier ones are written, into at most
    ``max(2, budget_bytes // block bytes)`` buffers. Returns rows written per cell line."""
    cells = list(out_paths)
    writers = _CellWriters(out_paths, profile_schema(gene_ids), split.meta,
                           row_group_rows=row_group_rows, compression=compression,
                           threads=write_threads, matrix_path=matrix.path)
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
                end = cursor[k] + int(np.searchsorted(
                    split.positions[cursor[k]:split.bounds[k + 1]], stop))
                if end > cursor[k]:
                    jobs.append(writers.add(
                        cell, block, split.positions[cursor[k]:end] - start, matrix.columns,
                        split.rows[cursor[k]:end]))
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


def read_profile_gene_ids(path: str | Path) -> list[str]:
    """The landmark gene order recorded in a lake Parquet file."""
    meta = pq.read_schema(path).metadata or {}
    if GENE_IDS_KEY not in meta:
        raise L1000InputError(path, "no landmark gene order recorded in the Parquet metadata")
    return json.loads(meta[GENE_IDS_KEY])


def iter_profile_batches(paths: Iterable[str | Path], columns: Sequence[str] | None = None,
                         batch_size: int = 16_384) -> Iterator[pa.RecordBatch]:
    """Stream record batches from lake files (bounded memory)."""
    for path in paths:
        pf = pq.ParquetFile(path)
        yield from pf.iter_batches(batch_size=batch_size, columns=columns)


def landmark_matrix(batch: pa.RecordBatch | pa.Table) -> np.ndarray:
    """The ``landmarks`` column of a batch as an ``(n, 978)`` float32 array (zero-copy)."""
    col = batch.column(VALUES_COLUMN)
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.flatten().to_numpy(zero_copy_only=False).reshape(-1, N_LANDMARKS)
