"""The lake's schema: what every later stage imports about the landmark profile files.

One Parquet file per (cell line, release) under ``lake/landmark_profiles/cell_id=<line>/``:
the canonical instance columns (less ``profile_class``) and the 978 landmark z-scores as one
``fixed_size_list<float32>[978]`` column (:data:`VALUES_COLUMN`) in the gene order recorded in
the file's metadata (:data:`GENE_IDS_KEY`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import pyarrow as pa

from l1000_assets.core.releases.schema import INSTANCE_COLUMNS, N_LANDMARKS

__all__ = [
    "N_LANDMARKS",
    "VALUES_COLUMN",
    "GENE_IDS_KEY",
    "PROFILE_META_COLUMNS",
    "instance_schema",
    "profile_schema",
]

VALUES_COLUMN = "landmarks"
GENE_IDS_KEY = b"l1000.landmark_gene_ids"
PROFILE_META_COLUMNS = [c for c in INSTANCE_COLUMNS if c != "profile_class"]


def instance_schema() -> pa.Schema:
    """The canonical ``instances`` table as Arrow: numbers as float64, the rest as string."""
    return pa.schema(
        [
            pa.field(c, pa.float64() if c in ("pert_dose", "pert_time") else pa.string())
            for c in INSTANCE_COLUMNS
        ]
    )


def profile_schema(gene_ids: Sequence[str]) -> pa.Schema:
    """The schema of a lake file whose landmark values are in ``gene_ids`` order."""
    fields = [
        pa.field(c, pa.float64() if c in ("pert_dose", "pert_time") else pa.string())
        for c in PROFILE_META_COLUMNS
    ]
    fields.append(pa.field(VALUES_COLUMN, pa.list_(pa.float32(), N_LANDMARKS)))
    return pa.schema(fields, metadata={GENE_IDS_KEY: json.dumps(list(gene_ids)).encode()})
