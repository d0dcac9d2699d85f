"""Embeddings of the lake and their aggregates: profiles, signatures, perturbagens, MODZ.

* :func:`write_profile_embeddings` streams lake files through an embedding function and
  writes one Parquet file with the profile metadata and a ``fixed_size_list<float32>[d]``
  ``embedding`` column.
* :func:`write_signature_embeddings`: one row per signature (perturbagen x cell line x dose
  x time): the mean of its profile embeddings, re-normalized to unit length, with the
  replicate count.
* :func:`write_perturbagen_embeddings`: one row per perturbagen and cell line, and one per
  perturbagen over all cell lines (``cell_id`` null): the re-normalized mean of its profile
  embeddings.
* :func:`write_zscore_signatures`: MODZ-collapsed level-4 z-scores per signature (the
  CMap level-5 baseline), with the same ``sig_id`` as the signature embeddings.

Memory: profile embeddings stream in record batches; signature and perturbagen aggregates
hold one cell line's embeddings (``d`` floats per profile) at a time; MODZ streams the
profiles of one cell line sorted by signature (DuckDB sorts out of core under a memory
limit), holding one batch and one signature's replicates.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.catalog import sql_literal
from l1000_assets.core.connectivity import modz
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.ingest import N_LANDMARKS, VALUES_COLUMN, landmark_matrix

EMBEDDING_COLUMN = "embedding"
SIGNATURE_COLUMN = "signature"
MODEL_VERSION_KEY = b"l1000.model_version"
DIM_KEY = b"l1000.embedding_dim"
PROFILE_COLUMNS = ["inst_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose",
                   "pert_dose_unit", "pert_time", "pert_time_unit", "release"]
# A signature: the replicates of one perturbagen in one cell line at one dose and time.
SIGNATURE_KEYS = ["cell_id", "pert_id", "pert_dose", "pert_dose_unit", "pert_time",
                  "pert_time_unit"]
SIGNATURE_COLUMNS = ["sig_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose",
                     "pert_dose_unit", "pert_time", "pert_time_unit", "n_replicates"]
PERTURBAGEN_COLUMNS = ["pert_id", "pert_iname", "pert_type", "cell_id", "n_profiles",
                       "n_signatures", "n_cell_lines"]

EmbedFn = Callable[[np.ndarray], np.ndarray]
Progress = Callable[[int, int, float], None]


def model_version(card_path: str | Path) -> str:
    """The model's version: the first 16 hex digits of the SHA-256 of its ``card.json``
    (the ``embedding_model`` asset's data version)."""
    return hashlib.sha256(Path(card_path).read_bytes()).hexdigest()[:16]


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); an all-zero row stays zero."""
    x = np.asarray(x, np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)


def vector_array(x: np.ndarray) -> pa.FixedSizeListArray:
    """An ``(n, d)`` matrix as a ``fixed_size_list<float32>[d]`` Arrow array (zero-copy)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])


def vector_matrix(column: pa.Array | pa.ChunkedArray, dim: int | None = None) -> np.ndarray:
    """A list or fixed-size-list column as an ``(n, d)`` float32 matrix."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array(
            [], pa.list_(pa.float32()))
    n = len(column)
    flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if dim is None:
        dim = flat.size // n if n else 0
    return flat.reshape(n, dim)


def embedding_dim(path: str | Path) -> int:
    """The embedding width recorded in a file written here."""
    meta = pq.read_schema(path).metadata or {}
    if DIM_KEY not in meta:
        raise L1000InputError(path, "no embedding dimension recorded: not an embeddings file")
    return int(meta[DIM_KEY])


def recorded_model_version(path: str | Path) -> str:
    """The model version recorded in an embeddings file."""
    meta = pq.read_schema(path).metadata or {}
    if MODEL_VERSION_KEY not in meta:
        raise L1000InputError(path, "no model version recorded: not an embeddings file")
    return meta[MODEL_VERSION_KEY].decode()


def _with_embedding(fields: Sequence[pa.Field], dim: int, version: str,
                    column: str = EMBEDDING_COLUMN) -> pa.Schema:
    return pa.schema([*fields, pa.field(column, pa.list_(pa.float32(), dim))],
                     metadata={MODEL_VERSION_KEY: version.encode(), DIM_KEY: str(dim).encode()})


def _field(name: str) -> pa.Field:
    if name in ("pert_dose", "pert_time"):
        return pa.field(name, pa.float64())
    if name.startswith("n_"):
        return pa.field(name, pa.int64())
    return pa.field(name, pa.string())


def _format_number(x: float | None) -> str:
    if x is None or x != x:
        return ""
    return f"{x:.10g}"


def signature_ids(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """``cell:pert:dose unit:time unit`` of every row, e.g. ``A549:BRD-K1:10uM:24h``.

    The same rows give the same ids whichever table they come from, so signature
    embeddings and MODZ z-score signatures can be joined on ``sig_id``.
    """
    cols = {k: table.column(k).to_pylist() for k in SIGNATURE_KEYS}
    return np.array([
        f"{c}:{p}:{_format_number(d)}{du or ''}:{_format_number(t)}{tu or ''}"
        for c, p, d, du, t, tu in zip(cols["cell_id"], cols["pert_id"], cols["pert_dose"],
                                      cols["pert_dose_unit"], cols["pert_time"],
                                      cols["pert_time_unit"])], dtype=object)


def _grouped_sums(keys: np.ndarray, x: np.ndarray):
    """Unique keys (sorted), the row index of each group's first row, per-group sums
    (float64) and counts."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sums = np.add.reduceat(x[order].astype(np.float64), starts, axis=0) if len(x) else \
        np.zeros((0, x.shape[1]))
    counts = np.diff(np.r_[starts, len(keys)])
    return sorted_keys[starts], order[starts], sums, counts


# --------------------------------------------------------------------------------------
# Profile embeddings
# --------------------------------------------------------------------------------------
def write_profile_embeddings(files: Sequence[str | Path], embed: EmbedFn, out_path: str | Path,
                             *, version: str, batch_size: int = 16_384,
                             progress: Progress | None = None) -> int:
    """Embed every profile of ``files`` (lake Parquet) into one Parquet file, atomically.

    ``embed`` maps ``(n, 978)`` float32 z-scores to ``(n, d)`` unit vectors.
    Returns the number of rows written.
    """
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    done = 0
    t0 = time.perf_counter()
    writer = None
    with atomic_file(out_path) as tmp:
        try:
            for path in files:
                pf = pq.ParquetFile(path)
                columns = [c for c in PROFILE_COLUMNS if c in pf.schema_arrow.names]
                for batch in pf.iter_batches(batch_size=batch_size,
                                             columns=[*columns, VALUES_COLUMN]):
                    z = np.asarray(embed(landmark_matrix(batch)), np.float32)
                    if writer is None:
                        schema = _with_embedding([_field(c) for c in PROFILE_COLUMNS],
                                                 z.shape[1], version)
                        writer = pq.ParquetWriter(tmp, schema)
                    arrays = [batch.column(c).cast(schema.field(c).type) if c in columns
                              else pa.nulls(batch.num_rows, schema.field(c).type)
                              for c in PROFILE_COLUMNS]
                    writer.write_batch(pa.record_batch([*arrays, vector_array(z)],
                                                       schema=schema))
                    done += batch.num_rows
                    if progress:
                        progress(done, total, time.perf_counter() - t0)
            if writer is None:
                raise L1000InputError(files[0] if files else out_path, "no profiles to embed")
        finally:
            if writer is not None:
                writer.close()
    return done


def read_embeddings(path: str | Path, columns: Sequence[str]) -> tuple[pa.Table, np.ndarray]:
    """Metadata ``columns`` and the ``(n, d)`` embedding matrix of an embeddings file."""
    table = pq.read_table(path, columns=[*columns, EMBEDDING_COLUMN])
    return table.drop_columns([EMBEDDING_COLUMN]), vector_matrix(
        table.column(EMBEDDING_COLUMN), embedding_dim(path))


# --------------------------------------------------------------------------------------
# Signatures and perturbagens
# --------------------------------------------------------------------------------------
def _versions(files: Sequence[str | Path]) -> str:
    versions = {recorded_model_version(f) for f in files}
    if len(versions) != 1:
        raise L1000InputError(Path(files[0]).parent.parent,
                              f"profile embeddings from {len(versions)} different models "
                              f"({', '.join(sorted(versions))}): embed every cell line again")
    return versions.pop()


def _dims(files: Sequence[str | Path]) -> int:
    dims = {embedding_dim(f) for f in files}
    if len(dims) != 1:
        raise L1000InputError(Path(files[0]).parent.parent,
                              f"profile embeddings of different widths {sorted(dims)}")
    return dims.pop()


def write_signature_embeddings(profile_files: Sequence[str | Path], out_path: str | Path,
                               *, log: Callable[[str], None] | None = None) -> int:
    """One row per signature: re-normalized mean of its profile embeddings, atomically.

    Each file (one cell line) is read whole: memory ~ ``d`` floats per profile of the
    largest cell line. Returns the number of signatures.
    """
    if not profile_files:
        raise L1000InputError(out_path, "no profile embeddings: materialize profile_embeddings")
    version, dim = _versions(profile_files), _dims(profile_files)
    schema = _with_embedding([_field(c) for c in SIGNATURE_COLUMNS], dim, version)
    meta_columns = ["pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose",
                    "pert_dose_unit", "pert_time", "pert_time_unit"]
    n = 0
    with atomic_file(out_path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for path in profile_files:
            table, z = read_embeddings(path, meta_columns)
            keys, first, sums, counts = _grouped_sums(signature_ids(table), z)
            rows = table.take(pa.array(first))
            arrays = {c: rows.column(c) for c in meta_columns}
            arrays["sig_id"] = pa.array(keys.astype(str).tolist(), pa.string())
            arrays["n_replicates"] = pa.array(counts, pa.int64())
            writer.write_table(pa.table(
                [*(arrays[c].cast(schema.field(c).type) for c in SIGNATURE_COLUMNS),
                 vector_array(normalize_rows(sums))], schema=schema))
            n += len(keys)
            if log:
                log(f"{Path(path).parent.name}: {len(z):,} profiles -> {len(keys):,} signatures")
    return n


def write_perturbagen_embeddings(profile_files: Sequence[str | Path], out_path: str | Path,
                                 *, log: Callable[[str], None] | None = None) -> int:
    """Per perturbagen and cell line, and per perturbagen over all cell lines (``cell_id``
    null): the re-normalized mean of its profile embeddings, atomically.

    Returns the number of rows (both kinds).
    """
    if not profile_files:
        raise L1000InputError(out_path, "no profile embeddings: materialize profile_embeddings")
    version, dim = _versions(profile_files), _dims(profile_files)
    schema = _with_embedding([_field(c) for c in PERTURBAGEN_COLUMNS], dim, version)
    parts: dict[str, list] = {c: [] for c in ("pert_id", "pert_iname", "pert_type", "cell_id",
                                              "sums", "counts")}
    for path in profile_files:
        table, z = read_embeddings(path, [*SIGNATURE_KEYS, "pert_iname", "pert_type"])
        pert = np.array(table.column("pert_id").to_pylist(), dtype=object)
        keys, first, sums, n_profiles = _grouped_sums(pert, z)
        _, sig_first, _, _ = _grouped_sums(signature_ids(table), z[:, :0])
        sig_perts, n_sigs = np.unique(pert[sig_first].astype(str), return_counts=True)
        n_signatures = dict(zip(sig_perts.tolist(), n_sigs.tolist()))
        parts["pert_id"].append(keys)
        for c in ("pert_iname", "pert_type", "cell_id"):
            parts[c].append(np.array(table.column(c).take(pa.array(first)).to_pylist(), object))
        parts["sums"].append(sums)
        parts["counts"].append(np.c_[n_profiles, [n_signatures[k] for k in keys]])
        if log:
            log(f"{Path(path).parent.name}: {len(z):,} profiles -> {len(keys):,} perturbagens")
    per_cell = {c: np.concatenate(v) for c, v in parts.items()}
    keys, first, sums, n_cells = _grouped_sums(per_cell["pert_id"], per_cell["sums"])
    _, _, counts, _ = _grouped_sums(per_cell["pert_id"], per_cell["counts"])
    overall = {"pert_id": keys, "pert_iname": per_cell["pert_iname"][first],
               "pert_type": per_cell["pert_type"][first],
               "cell_id": np.full(len(keys), None, object), "sums": sums,
               "counts": counts.astype(np.int64), "n_cell_lines": n_cells}
    per_cell["n_cell_lines"] = np.ones(len(per_cell["pert_id"]), np.int64)
    with atomic_file(out_path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for part in (overall, per_cell):
            columns = {"pert_id": part["pert_id"], "pert_iname": part["pert_iname"],
                       "pert_type": part["pert_type"], "cell_id": part["cell_id"],
                       "n_profiles": part["counts"][:, 0], "n_signatures": part["counts"][:, 1],
                       "n_cell_lines": part["n_cell_lines"]}
            writer.write_table(pa.table(
                [pa.array(columns[c].tolist(), schema.field(c).type) for c in PERTURBAGEN_COLUMNS]
                + [vector_array(normalize_rows(part["sums"]))], schema=schema))
    return len(keys) + len(per_cell["pert_id"])


# --------------------------------------------------------------------------------------
# MODZ z-score signatures (the baseline)
# --------------------------------------------------------------------------------------
def write_zscore_signatures(landmark_files: Sequence[str | Path], out_path: str | Path, *,
                            memory_limit_mb: int = 1024, batch_size: int = 8192,
                            progress: Progress | None = None) -> int:
    """MODZ level-5 signatures of the lake profiles in ``landmark_files`` (one cell line),
    in one Parquet file with a ``fixed_size_list<float32>[978]`` ``signature`` column.

    DuckDB streams the profiles sorted by signature (spilling to a temporary directory
    beyond ``memory_limit_mb``), so each signature's replicates arrive together.
    Returns the number of signatures.
    """
    import duckdb

    if not landmark_files:
        raise L1000InputError(out_path, "no landmark profiles")
    fields = [_field(c) for c in SIGNATURE_COLUMNS]
    schema = pa.schema([*fields, pa.field(SIGNATURE_COLUMN, pa.list_(pa.float32(), N_LANDMARKS))])
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in landmark_files)
    meta_columns = ["pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose",
                    "pert_dose_unit", "pert_time", "pert_time_unit"]
    t0 = time.perf_counter()
    done = 0
    n = 0
    pending: list[tuple[pa.Table, np.ndarray]] = []   # the replicates of the open signature
    pending_id = None
    out: dict[str, list] = {c: [] for c in SIGNATURE_COLUMNS}
    vectors: list[np.ndarray] = []

    def emit() -> None:
        x = np.concatenate([p[1] for p in pending])
        signature, _ = modz(x)
        first = pending[0][0].slice(0, 1).to_pylist()[0]
        for c in meta_columns:
            out[c].append(first[c])
        out["sig_id"].append(pending_id)
        out["n_replicates"].append(len(x))
        vectors.append(signature.astype(np.float32))

    def flush(writer: pq.ParquetWriter) -> None:
        if vectors:
            writer.write_table(pa.table([*(pa.array(out[c], schema.field(c).type)
                                           for c in SIGNATURE_COLUMNS),
                                         vector_array(np.stack(vectors))], schema=schema))
            for values in out.values():
                values.clear()
            vectors.clear()

    with tempfile.TemporaryDirectory(prefix="l1000-modz-") as spill, \
            atomic_file(out_path) as tmp, pq.ParquetWriter(tmp, schema) as writer, \
            duckdb.connect() as con:
        con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
        con.execute(f"SET temp_directory = {sql_literal(spill)}")
        query = (f"SELECT {', '.join(meta_columns)}, {VALUES_COLUMN} "
                 "FROM read_parquet($files, union_by_name = true) "
                 f"ORDER BY {', '.join(SIGNATURE_KEYS)} NULLS LAST")
        reader = con.sql(query, params={"files": [str(f) for f in landmark_files]}
                         ).to_arrow_reader(batch_size)
        for batch in reader:
            table = pa.Table.from_batches([batch])
            ids = signature_ids(table)
            x = landmark_matrix(table)
            table = table.drop_columns([VALUES_COLUMN])
            bounds = np.r_[np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]), len(ids)]
            for a, b in zip(bounds[:-1], bounds[1:]):
                if pending and ids[a] != pending_id:
                    emit()
                    n += 1
                    pending.clear()
                pending.append((table.slice(a, b - a), x[a:b]))
                pending_id = ids[a]
            done += batch.num_rows
            if len(vectors) >= 4096:
                flush(writer)
            if progress:
                progress(done, total, time.perf_counter() - t0)
        if pending:
            emit()
            n += 1
        flush(writer)
    return n
