"""MODZ, the level 4 to level 5 collapse of replicates (CMap), and the MODZ-collapsed
z-score signatures of the lake (the CMap level-5 baseline).

Memory: MODZ streams the profiles of one cell line sorted by signature (DuckDB sorts out of
core under a memory limit), holding one batch and one signature's replicates.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import NDArray
from scipy.stats import rankdata

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.catalog.build import sql_literal
from l1000_assets.core.embeddings.aggregates import (
    SIGNATURE_COLUMNS,
    SIGNATURE_KEYS,
    SIGNATURE_META_COLUMNS,
    signature_ids,
)
from l1000_assets.core.embeddings.vectors import SIGNATURE_COLUMN, metadata_field, vector_array
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.lake.read import landmark_matrix
from l1000_assets.core.lake.schema import N_LANDMARKS, VALUES_COLUMN
from l1000_assets.core.progress import Progress

MODZ_MIN_WEIGHT = 0.01
"""Floor of a replicate's mean correlation in MODZ, before normalization (cmapPy's
``min_wt``)."""


def modz(
    replicates: NDArray[np.floating],
) -> tuple[NDArray[np.floating], NDArray[np.float64]]:
    """MODZ: the weighted average of replicate profiles (level 4 to level 5), as CMap
    computes it (cmapPy's ``agg_wt_avg``, mortar's ``modz``).

    Spearman correlations between replicates over the genes, negative values (and
    undefined ones, e.g. of a constant replicate) set to 0; a replicate's raw weight is the
    *mean* of its correlations with the other replicates, floored at
    :data:`MODZ_MIN_WEIGHT` (0.01), and the weights are normalized to sum to 1. One
    replicate is its own signature.

    Two differences from cmapPy, both outside its usual inputs: cmapPy rounds the weights to
    4 decimals before applying them (here they keep full precision), and it gives NaN
    weights when a replicate is constant (here its correlations count as 0).

    Parameters
    ----------
    replicates
        ``(r, N)`` replicate z-score profiles.

    Returns
    -------
    signature, weights
        ``(N,)`` signature (float32 for float32 input, else float64) and ``(r,)`` float64
        weights.
    """
    x = np.asarray(replicates)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"replicates must be (r >= 1, N), got {x.shape}")
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise ValueError("replicates contain non-finite values")
    if len(x) == 1:
        return x[0].astype(dtype), np.ones(1)
    ranks = rankdata(x, axis=1)
    ranks -= ranks.mean(axis=1, keepdims=True)
    norm = np.sqrt((ranks * ranks).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = (ranks @ ranks.T) / np.outer(norm, norm)
    corr = np.nan_to_num(corr, nan=0.0)
    np.fill_diagonal(corr, 0.0)
    np.clip(corr, 0.0, None, out=corr)
    weights = np.maximum(corr.sum(axis=1) / (len(x) - 1), MODZ_MIN_WEIGHT)
    weights /= weights.sum()
    return (weights @ x).astype(dtype), weights


def write_zscore_signatures(
    landmark_files: Sequence[str | Path],
    out_path: str | Path,
    *,
    memory_limit_mb: int = 1024,
    batch_size: int = 8192,
    progress: Progress | None = None,
) -> int:
    """MODZ level-5 signatures of the lake profiles in ``landmark_files`` (one cell line),
    in one Parquet file with a ``fixed_size_list<float32>[978]`` ``signature`` column.

    DuckDB streams the profiles sorted by signature (spilling to a temporary directory
    beyond ``memory_limit_mb``), so each signature's replicates arrive together.
    Returns the number of signatures.
    """
    import duckdb

    if not landmark_files:
        raise L1000InputError(out_path, "no landmark profiles")
    fields = [metadata_field(c) for c in SIGNATURE_COLUMNS]
    schema = pa.schema([*fields, pa.field(SIGNATURE_COLUMN, pa.list_(pa.float32(), N_LANDMARKS))])
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in landmark_files)
    t0 = time.perf_counter()
    done = 0
    n = 0
    pending: list[tuple[pa.Table, np.ndarray]] = []  # the replicates of the open signature
    pending_id = None
    out: dict[str, list] = {c: [] for c in SIGNATURE_COLUMNS}
    vectors: list[np.ndarray] = []

    def emit() -> None:
        x = np.concatenate([p[1] for p in pending])
        signature, _ = modz(x)
        first = pending[0][0].slice(0, 1).to_pylist()[0]
        for c in SIGNATURE_META_COLUMNS:
            out[c].append(first[c])
        out["sig_id"].append(pending_id)
        out["n_replicates"].append(len(x))
        vectors.append(signature.astype(np.float32))

    def flush(writer: pq.ParquetWriter) -> None:
        if vectors:
            writer.write_table(
                pa.table(
                    [
                        *(pa.array(out[c], schema.field(c).type) for c in SIGNATURE_COLUMNS),
                        vector_array(np.stack(vectors)),
                    ],
                    schema=schema,
                )
            )
            for values in out.values():
                values.clear()
            vectors.clear()

    with (
        tempfile.TemporaryDirectory(prefix="l1000-modz-") as spill,
        atomic_file(out_path) as tmp,
        pq.ParquetWriter(tmp, schema) as writer,
        duckdb.connect() as con,
    ):
        con.execute(f"SET memory_limit = '{int(memory_limit_mb)}MB'")
        con.execute(f"SET temp_directory = {sql_literal(spill)}")
        query = (
            f"SELECT {', '.join(SIGNATURE_META_COLUMNS)}, {VALUES_COLUMN} "
            "FROM read_parquet($files, union_by_name = true) "
            f"ORDER BY {', '.join(SIGNATURE_KEYS)} NULLS LAST"
        )
        reader = con.sql(query, params={"files": [str(f) for f in landmark_files]}).to_arrow_reader(
            batch_size
        )
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
