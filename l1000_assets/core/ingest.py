"""Release files -> canonical metadata tables and the landmark Parquet lake.

* :func:`open_release` reads a release directory (GCTX or GCT text matrix plus metadata
  tables, or metadata embedded in the GCT) into canonical metadata and a matrix source.
* :func:`reconcile` checks that matrix and metadata describe the same profiles and genes;
  ``strict`` raises on any disagreement, ``skip`` drops the offending ids and reports them.
* :func:`write_landmark_profiles` streams the 978 landmark rows of the matrix in column
  blocks, drops controls, joins metadata and writes one Parquet file per (cell line,
  release), with the landmark values as one ``fixed_size_list<float32>[978]`` column in
  canonical gene order. Memory is bounded by the block size and a writer buffer budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.gct import read_gct
from l1000_assets.core.gctx import ColumnBlock, GctxReader
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
        self._values = gct.values
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

    def iter_blocks(self, rows, *, block_size=4096, start=0, stop=None, check_finite=True):
        stop = len(self.col_ids) if stop is None else min(stop, len(self.col_ids))
        for b0 in range(start, stop, block_size):
            b1 = min(b0 + block_size, stop)
            yield ColumnBlock(b0, b1, self.col_ids[b0:b1], self._values[b0:b1][:, rows])


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
# Landmark lake
# --------------------------------------------------------------------------------------
def profile_schema(gene_ids: Sequence[str]) -> pa.Schema:
    fields = [pa.field(c, pa.float64() if c in ("pert_dose", "pert_time") else pa.string())
              for c in PROFILE_META_COLUMNS]
    fields.append(pa.field(VALUES_COLUMN, pa.list_(pa.float32(), N_LANDMARKS)))
    return pa.schema(fields, metadata={GENE_IDS_KEY: json.dumps(list(gene_ids)).encode()})


def _meta_table(instances: pd.DataFrame) -> pa.Table:
    cols = {}
    for c in PROFILE_META_COLUMNS:
        s = instances[c]
        if c in ("pert_dose", "pert_time"):
            cols[c] = pa.array(s.astype("float64").to_numpy(na_value=np.nan),
                               pa.float64(), mask=s.isna().to_numpy())
        else:
            cols[c] = pa.array(s.astype(object).where(s.notna(), None).tolist(), pa.string())
    return pa.table(cols)


class _CellWriters:
    """One Parquet writer per cell line, with buffers flushed to bound memory.

    Row groups of about ``row_group_rows``; when all buffers together exceed
    ``budget_bytes`` the largest is flushed early.
    """

    def __init__(self, paths: dict[str, Path], schema: pa.Schema, row_group_rows: int,
                 budget_bytes: int, compression: str):
        self.paths = paths
        self.schema = schema
        self.row_group_rows = row_group_rows
        self.budget = budget_bytes
        self.compression = compression
        self._writers: dict[str, pq.ParquetWriter] = {}
        for path in paths.values():
            path.parent.mkdir(parents=True, exist_ok=True)
        self._buffers: dict[str, list[pa.Table]] = {c: [] for c in paths}
        self._rows = dict.fromkeys(paths, 0)
        self._bytes = dict.fromkeys(paths, 0)
        self.written = dict.fromkeys(paths, 0)

    def add(self, cell: str, table: pa.Table) -> None:
        self._buffers[cell].append(table)
        self._rows[cell] += table.num_rows
        self._bytes[cell] += table.nbytes
        if self._rows[cell] >= self.row_group_rows:
            self._flush(cell)
        while sum(self._bytes.values()) > self.budget:
            self._flush(max(self._bytes, key=self._bytes.get))

    def _flush(self, cell: str) -> None:
        if not self._buffers[cell]:
            return
        if cell not in self._writers:
            self._writers[cell] = pq.ParquetWriter(self.paths[cell], self.schema,
                                                   compression=self.compression)
        table = pa.concat_tables(self._buffers[cell])
        self._writers[cell].write_table(table, row_group_size=self.row_group_rows)
        self.written[cell] += table.num_rows
        self._buffers[cell] = []
        self._rows[cell] = self._bytes[cell] = 0

    def close(self) -> None:
        for cell in self.paths:
            self._flush(cell)
            if cell not in self._writers:  # a cell line with no profile still gets a file
                pq.ParquetWriter(self.paths[cell], self.schema,
                                 compression=self.compression).close()
        for w in self._writers.values():
            w.close()


@dataclass(frozen=True)
class LandmarkIngestReport:
    release: str
    rows_written: dict[str, int]
    controls_removed: dict[str, int]
    seconds: float

    @property
    def total(self) -> int:
        return sum(self.rows_written.values())


def write_landmark_profiles(
    release: ReleaseData,
    reconciliation: Reconciliation,
    out_paths: dict[str, Path],
    *,
    block_size: int = 8192,
    row_group_rows: int = 16_384,
    budget_bytes: int = 256 << 20,
    compression: str = "snappy",
    progress: Callable[[int, int, float], None] | None = None,
) -> LandmarkIngestReport:
    """Write the non-control landmark profiles of ``release`` for the cell lines in
    ``out_paths`` (cell line -> Parquet file), in one pass over the matrix.

    Only column blocks that hold a wanted profile are read, and of them only the span of
    rows covering the landmarks.
    """
    import time

    t0 = time.perf_counter()
    inst = reconciliation.instances
    is_control = inst["profile_class"].eq("control").to_numpy()
    in_cells = inst["cell_id"].isin(list(out_paths)).to_numpy()
    controls_removed = inst[is_control & in_cells].groupby("cell_id").size().to_dict()
    wanted = inst[~is_control & in_cells].reset_index(drop=True)
    positions = wanted["position"].to_numpy()
    meta = _meta_table(wanted)
    cells = wanted["cell_id"].to_numpy()
    schema = profile_schema(reconciliation.landmark_gene_ids)
    writers = _CellWriters(out_paths, schema, row_group_rows, budget_bytes, compression)
    done = 0
    try:
        with release.open_matrix() as matrix:
            for lo, hi, block in _wanted_blocks(matrix, reconciliation.landmark_rows,
                                                positions, block_size):
                values = block.values[positions[lo:hi] - block.start]
                flat = pa.array(values.reshape(-1), pa.float32())
                vec = pa.FixedSizeListArray.from_arrays(flat, N_LANDMARKS)
                table = meta.slice(lo, hi - lo).append_column(VALUES_COLUMN, vec)
                block_cells = cells[lo:hi]
                for cell in pd.unique(block_cells):
                    idx = np.nonzero(block_cells == cell)[0]
                    writers.add(cell, table.take(pa.array(idx)))
                done = hi
                if progress is not None:
                    progress(done, len(positions), time.perf_counter() - t0)
        writers.close()
    except BaseException:
        writers.close()
        raise
    return LandmarkIngestReport(release.name, writers.written,
                                {c: int(controls_removed.get(c, 0)) for c in out_paths},
                                time.perf_counter() - t0)


def _wanted_blocks(matrix, rows: np.ndarray, positions: np.ndarray,
                   block_size: int) -> Iterator[tuple[int, int, ColumnBlock]]:
    """Blocks of at most ``block_size`` matrix columns that contain wanted positions.

    Yields ``(lo, hi, block)``: ``positions[lo:hi]`` fall inside ``block``.
    """
    lo = 0
    n = len(positions)
    while lo < n:
        start = int(positions[lo])
        hi = int(np.searchsorted(positions, start + block_size, side="left"))
        stop = int(positions[hi - 1]) + 1
        block = next(iter(matrix.iter_blocks(rows, block_size=stop - start, start=start,
                                             stop=stop)))
        yield lo, hi, block
        lo = hi


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
