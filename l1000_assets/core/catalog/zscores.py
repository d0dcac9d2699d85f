"""Perturbagen-level z-score profiles, the input of the catalog's perturbagen-level
z-score baseline (``perturbagen_zscores``, ``similar_zscore_perturbagens``).

Each perturbagen's profile is the mean of its MODZ z-score signatures, per cell line and over
all cell lines (``cell_id`` null), as the drug-level evaluation protocols compute it. The means
are summed in numpy, streamed in record batches from one cell line's ``zscore_signatures``
file at a time (memory: one batch, plus one 978-float sum per perturbagen and cell line):
DuckDB 2.0 has no element-wise mean of arrays, and folding 978-float lists pairwise with
``list_reduce`` took 4 s on the demo's 11,440 signatures. The catalog SQL takes it from there
(``sql/020_embeddings.sql``: shRNAs collapsed to their gene, comments).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from l1000_assets.core.embeddings.vectors import vector_array, vector_matrix
from l1000_assets.core.lake.schema import N_LANDMARKS

SIGNATURE_COLUMN = "signature"
_META = ["pert_id", "pert_iname", "pert_type"]

ZSCORE_SCHEMA = pa.schema(
    [
        pa.field("pert_id", pa.string()),
        pa.field("pert_iname", pa.string()),
        pa.field("pert_type", pa.string()),
        pa.field("cell_id", pa.string()),
        pa.field("n_signatures", pa.int64()),
        pa.field("zscores", pa.list_(pa.float32(), N_LANDMARKS)),
    ]
)


def perturbagen_zscores(files: Sequence[str | Path], batch_size: int = 8192) -> pa.Table:
    """The mean z-score signature of each perturbagen per cell line and over all cell lines
    (:data:`ZSCORE_SCHEMA`), from ``zscore_signatures`` files."""
    meta: dict[str, tuple[str | None, str | None]] = {}
    sums: dict[tuple[str, str | None], np.ndarray] = {}
    counts: dict[tuple[str, str | None], int] = {}
    for path in files:
        f = pq.ParquetFile(path)
        for batch in f.iter_batches(batch_size, columns=[*_META, "cell_id", SIGNATURE_COLUMN]):
            if not batch.num_rows:
                continue
            x = vector_matrix(batch.column(SIGNATURE_COLUMN), N_LANDMARKS)
            perts = batch.column("pert_id").to_pylist()
            cells = batch.column("cell_id").to_pylist()
            keys = np.array([f"{p}\x00{c}" for p, c in zip(perts, cells)], object)
            uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            order = np.argsort(inverse, kind="stable")
            n = np.bincount(inverse, minlength=len(uniq))
            starts = np.r_[0, np.cumsum(n)[:-1]]
            block = np.add.reduceat(x[order].astype(np.float64), starts, axis=0)
            names = batch.column("pert_iname").to_pylist()
            types = batch.column("pert_type").to_pylist()
            for g, row in enumerate(first):
                pert, cell = perts[row], cells[row]
                meta.setdefault(pert, (names[row], types[row]))
                for key in ((pert, cell), (pert, None)):
                    if key in sums:
                        sums[key] += block[g]
                    else:
                        sums[key] = block[g].copy()
                    counts[key] = counts.get(key, 0) + int(n[g])
    keys = sorted(sums, key=lambda k: (k[1] is not None, k[1] or "", k[0]))
    means = (
        np.stack([sums[k] / counts[k] for k in keys]).astype(np.float32)
        if keys
        else np.zeros((0, N_LANDMARKS), np.float32)
    )
    return pa.table(
        [
            pa.array([k[0] for k in keys], pa.string()),
            pa.array([meta[k[0]][0] for k in keys], pa.string()),
            pa.array([meta[k[0]][1] for k in keys], pa.string()),
            pa.array([k[1] for k in keys], pa.string()),
            pa.array([counts[k] for k in keys], pa.int64()),
            vector_array(means),
        ],
        schema=ZSCORE_SCHEMA,
    )
