"""Embeddings of the lake and their aggregates: profiles, signatures, perturbagens.

* :func:`write_profile_embeddings` streams lake files through an embedding function and
  writes one Parquet file with the profile metadata and a ``fixed_size_list<float32>[d]``
  ``embedding`` column.
* :func:`write_signature_embeddings`: one row per signature (perturbagen x cell line x dose
  x time): the mean of its profile embeddings, re-normalized to unit length, with the
  replicate count.
* :func:`write_perturbagen_embeddings`: one row per perturbagen and cell line, and one per
  perturbagen over all cell lines (``cell_id`` null): the re-normalized mean of its profile
  embeddings.

Memory: profile embeddings stream in record batches; signature and perturbagen aggregates
hold one cell line's embeddings (``d`` floats per profile) at a time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.embeddings.vectors import (
    EmbedFn,
    embedding_schema,
    metadata_field,
    normalize_rows,
    read_embeddings,
    single_embedding_dim,
    single_model_version,
    vector_array,
)
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.lake.read import landmark_matrix
from l1000_assets.core.lake.schema import VALUES_COLUMN
from l1000_assets.core.progress import Log, Progress

PROFILE_COLUMNS = [
    "inst_id",
    "pert_id",
    "pert_iname",
    "pert_type",
    "cell_id",
    "pert_dose",
    "pert_dose_unit",
    "pert_time",
    "pert_time_unit",
    "release",
]
# A signature: the replicates of one perturbagen in one cell line at one dose and time.
SIGNATURE_KEYS = [
    "cell_id",
    "pert_id",
    "pert_dose",
    "pert_dose_unit",
    "pert_time",
    "pert_time_unit",
]
#: The profile columns a signature keeps (its replicates share them).
SIGNATURE_META_COLUMNS = [
    "pert_id",
    "pert_iname",
    "pert_type",
    "cell_id",
    "pert_dose",
    "pert_dose_unit",
    "pert_time",
    "pert_time_unit",
]
SIGNATURE_COLUMNS = [
    "sig_id",
    "pert_id",
    "pert_iname",
    "pert_type",
    "cell_id",
    "pert_dose",
    "pert_dose_unit",
    "pert_time",
    "pert_time_unit",
    "n_replicates",
]
PERTURBAGEN_COLUMNS = [
    "pert_id",
    "pert_iname",
    "pert_type",
    "cell_id",
    "n_profiles",
    "n_signatures",
    "n_cell_lines",
]


def _format_number(x: float | None) -> str:
    if x is None or x != x:
        return ""
    return f"{x:.10g}"


def signature_ids(table: pa.Table | pa.RecordBatch) -> NDArray[np.object_]:
    """``cell:pert:dose unit:time unit`` of every row, e.g. ``A549:BRD-K1:10uM:24h``.

    The same rows give the same ids whichever table they come from, so signature
    embeddings and MODZ z-score signatures can be joined on ``sig_id``.
    """
    cols = {k: table.column(k).to_pylist() for k in SIGNATURE_KEYS}
    return np.array(
        [
            f"{c}:{p}:{_format_number(d)}{du or ''}:{_format_number(t)}{tu or ''}"
            for c, p, d, du, t, tu in zip(
                cols["cell_id"],
                cols["pert_id"],
                cols["pert_dose"],
                cols["pert_dose_unit"],
                cols["pert_time"],
                cols["pert_time_unit"],
            )
        ],
        dtype=object,
    )


def _grouped_sums(keys: np.ndarray, x: np.ndarray):
    """Unique keys (sorted), the row index of each group's first row, per-group sums
    (float64) and counts."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sums = (
        np.add.reduceat(x[order].astype(np.float64), starts, axis=0)
        if len(x)
        else np.zeros((0, x.shape[1]))
    )
    counts = np.diff(np.r_[starts, len(keys)])
    return sorted_keys[starts], order[starts], sums, counts


# --------------------------------------------------------------------------------------
# Profile embeddings
# --------------------------------------------------------------------------------------
def write_profile_embeddings(
    files: Sequence[str | Path],
    embed: EmbedFn,
    out_path: str | Path,
    *,
    version: str,
    batch_size: int = 16_384,
    progress: Progress | None = None,
) -> int:
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
                for batch in pf.iter_batches(
                    batch_size=batch_size, columns=[*columns, VALUES_COLUMN]
                ):
                    z = np.asarray(embed(landmark_matrix(batch)), np.float32)
                    if writer is None:
                        schema = embedding_schema(
                            [metadata_field(c) for c in PROFILE_COLUMNS], z.shape[1], version
                        )
                        writer = pq.ParquetWriter(tmp, schema)
                    arrays = [
                        batch.column(c).cast(schema.field(c).type)
                        if c in columns
                        else pa.nulls(batch.num_rows, schema.field(c).type)
                        for c in PROFILE_COLUMNS
                    ]
                    writer.write_batch(pa.record_batch([*arrays, vector_array(z)], schema=schema))
                    done += batch.num_rows
                    if progress:
                        progress(done, total, time.perf_counter() - t0)
            if writer is None:
                raise L1000InputError(files[0] if files else out_path, "no profiles to embed")
        finally:
            if writer is not None:
                writer.close()
    return done


def write_signature_embeddings(
    profile_files: Sequence[str | Path], out_path: str | Path, *, log: Log | None = None
) -> int:
    """One row per signature: re-normalized mean of its profile embeddings, atomically.

    Each file (one cell line) is read whole: memory ~ ``d`` floats per profile of the
    largest cell line. Returns the number of signatures.
    """
    if not profile_files:
        raise L1000InputError(out_path, "no profile embeddings: materialize profile_embeddings")
    version, dim = single_model_version(profile_files), single_embedding_dim(profile_files)
    schema = embedding_schema([metadata_field(c) for c in SIGNATURE_COLUMNS], dim, version)
    n = 0
    with atomic_file(out_path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for path in profile_files:
            table, z = read_embeddings(path, SIGNATURE_META_COLUMNS)
            keys, first, sums, counts = _grouped_sums(signature_ids(table), z)
            rows = table.take(pa.array(first))
            arrays = {c: rows.column(c) for c in SIGNATURE_META_COLUMNS}
            arrays["sig_id"] = pa.array(keys.astype(str).tolist(), pa.string())
            arrays["n_replicates"] = pa.array(counts, pa.int64())
            writer.write_table(
                pa.table(
                    [
                        *(arrays[c].cast(schema.field(c).type) for c in SIGNATURE_COLUMNS),
                        vector_array(normalize_rows(sums)),
                    ],
                    schema=schema,
                )
            )
            n += len(keys)
            if log:
                log(f"{Path(path).parent.name}: {len(z):,} profiles -> {len(keys):,} signatures")
    return n


def write_perturbagen_embeddings(
    profile_files: Sequence[str | Path], out_path: str | Path, *, log: Log | None = None
) -> int:
    """Per perturbagen and cell line, and per perturbagen over all cell lines (``cell_id``
    null): the re-normalized mean of its profile embeddings, atomically.

    Returns the number of rows (both kinds).
    """
    if not profile_files:
        raise L1000InputError(out_path, "no profile embeddings: materialize profile_embeddings")
    version, dim = single_model_version(profile_files), single_embedding_dim(profile_files)
    schema = embedding_schema([metadata_field(c) for c in PERTURBAGEN_COLUMNS], dim, version)
    parts: dict[str, list] = {
        c: [] for c in ("pert_id", "pert_iname", "pert_type", "cell_id", "sums", "counts")
    }
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
    overall = {
        "pert_id": keys,
        "pert_iname": per_cell["pert_iname"][first],
        "pert_type": per_cell["pert_type"][first],
        "cell_id": np.full(len(keys), None, object),
        "sums": sums,
        "counts": counts.astype(np.int64),
        "n_cell_lines": n_cells,
    }
    per_cell["n_cell_lines"] = np.ones(len(per_cell["pert_id"]), np.int64)
    with atomic_file(out_path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for part in (overall, per_cell):
            columns = {
                "pert_id": part["pert_id"],
                "pert_iname": part["pert_iname"],
                "pert_type": part["pert_type"],
                "cell_id": part["cell_id"],
                "n_profiles": part["counts"][:, 0],
                "n_signatures": part["counts"][:, 1],
                "n_cell_lines": part["n_cell_lines"],
            }
            writer.write_table(
                pa.table(
                    [
                        pa.array(columns[c].tolist(), schema.field(c).type)
                        for c in PERTURBAGEN_COLUMNS
                    ]
                    + [vector_array(normalize_rows(part["sums"]))],
                    schema=schema,
                )
            )
    return len(keys) + len(per_cell["pert_id"])
