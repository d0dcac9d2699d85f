"""An example query profile made from the lake itself: the mean level-4 profile of the
compound with the most profiles, as a genes-by-symbol CSV. The demo drops it into the queries
folder as ``my_extract.csv`` (a stand-in for a user's own profile), so the read-across
examples of the README have a file to run on; its top hit is that compound."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.lake.read import landmark_matrix, read_profile_gene_ids
from l1000_assets.core.readacross.genes import read_genes

EXAMPLE_NAME = "my_extract"


def write_example_profile(
    landmark_files: Sequence[str | Path],
    genes_paths: Sequence[str | Path],
    out_path: str | Path,
    *,
    pert_type: str = "trt_cp",
) -> str:
    """Write the mean profile of the ``pert_type`` perturbagen with the most lake profiles
    to ``out_path`` (column ``gene``: symbols; column ``my_extract``: z-scores) and return
    its ``pert_id``. Reads the ``pert_id`` column of every file, then one perturbagen's rows."""
    files = [Path(f) for f in landmark_files]
    if not files:
        raise L1000InputError("landmark_profiles", "no lake files: materialize landmark_profiles")
    counts: Counter[str] = Counter()
    for f in files:
        t = pq.read_table(f, columns=["pert_id", "pert_type"])
        counts.update(t.filter(pc.equal(t["pert_type"], pert_type))["pert_id"].to_pylist())
    if not counts:
        raise L1000InputError(files[0].parent.parent, f"no {pert_type} profiles in the lake")
    pert = counts.most_common(1)[0][0]
    total, n = np.zeros(0), 0
    for f in files:
        t = pq.read_table(f, columns=["pert_id", "landmarks"], filters=[("pert_id", "=", pert)])
        if t.num_rows:
            x = landmark_matrix(t).astype(np.float64)
            total = total + x.sum(axis=0) if n else x.sum(axis=0)
            n += len(x)
    genes = read_genes(genes_paths)
    symbol = dict(zip(genes["gene_id"].astype(str), genes["symbol"]))
    order = read_profile_gene_ids(files[0])
    table = pd.DataFrame(
        {"gene": [symbol.get(g) or g for g in order], EXAMPLE_NAME: (total / n).round(4)}
    )
    with atomic_file(out_path) as tmp:
        table.to_csv(tmp, index=False)
    return pert
