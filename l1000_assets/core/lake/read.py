"""Reading the lake: canonical metadata tables and landmark profile files, streamed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.lake.schema import (
    GENE_IDS_KEY,
    N_LANDMARKS,
    VALUES_COLUMN,
    instance_schema,
)
from l1000_assets.core.releases.schema import INSTANCE_COLUMNS

#: Instance columns read dictionary-encoded: all but the unique ``inst_id`` and the numbers.
_DICTIONARY_COLUMNS = [
    c for c in INSTANCE_COLUMNS if c not in ("inst_id", "pert_dose", "pert_time")
]


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
    schema = instance_schema()
    missing = [c for c in schema.names if c not in pq.read_schema(path).names]
    if missing:
        raise L1000InputError(path, f"instances: no column for {missing}")
    # One thread: the decoded row group is held only once (about a third of the peak).
    table = pq.ParquetFile(path, read_dictionary=_DICTIONARY_COLUMNS).read(
        columns=schema.names, use_threads=False
    )
    return compact_instances(table)


def compact_instances(table: pa.Table) -> pa.Table:
    """The canonical instance columns of ``table``, one chunk each: dictionary-encoded
    text columns stay so (values cast to ``string``), the others are cast to the canonical
    types (:func:`instance_schema`)."""
    columns, fields = [], []
    for target in instance_schema():
        column = table.column(target.name)
        kind = target.type
        if (
            pa.types.is_dictionary(column.type)
            and target.type == pa.string()
            and target.name != "inst_id"
        ):
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
    marked = pc.fill_null(genes["is_landmark"], False)
    landmarks = genes.filter(marked)
    if landmarks.num_rows != N_LANDMARKS:
        # A landmark_index says which genes were landmarks when the table was written.
        unmarked = genes.filter(pc.and_(pc.is_valid(genes["landmark_index"]), pc.invert(marked)))
        held = set(landmarks["landmark_index"].drop_null().to_pylist())
        gaps = [i for i in range(N_LANDMARKS) if i not in held]
        detail = ""
        if unmarked.num_rows:
            detail += (
                f"; with a landmark_index but not marked: "
                f"{preview_ids(unmarked['gene_id'].to_pylist())}"
            )
        if gaps:
            shown = ", ".join(map(str, gaps[:10])) + (" ..." if len(gaps) > 10 else "")
            detail += f"; landmark positions without a gene: {shown}"
        raise L1000InputError(
            path,
            f"genes: {landmarks.num_rows} landmark genes marked, expected {N_LANDMARKS}{detail}",
        )
    return landmarks.sort_by("landmark_index").column("gene_id").cast(pa.string()).to_pylist()


def read_profile_gene_ids(path: str | Path) -> list[str]:
    """The landmark gene order recorded in a lake Parquet file."""
    meta = pq.read_schema(path).metadata or {}
    if GENE_IDS_KEY not in meta:
        raise L1000InputError(path, "no landmark gene order recorded in the Parquet metadata")
    return json.loads(meta[GENE_IDS_KEY])


def iter_profile_batches(
    paths: Iterable[str | Path], columns: Sequence[str] | None = None, batch_size: int = 16_384
) -> Iterator[pa.RecordBatch]:
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
