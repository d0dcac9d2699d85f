"""The read-across results tables (hits and query embeddings), merged atomically."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from l1000_assets.core.readacross.ranking import ReadAcrossResult

RESULT_SCHEMA = pa.schema(
    [
        pa.field("query_file", pa.string()),
        pa.field("query_path", pa.string()),
        pa.field("query_id", pa.string()),
        pa.field("rank", pa.int64()),
        pa.field("pert_id", pa.string()),
        pa.field("pert_iname", pa.string()),
        pa.field("pert_type", pa.string()),
        pa.field("cell_id", pa.string()),
        pa.field("similarity", pa.float64()),
        pa.field("moa", pa.string()),
        pa.field("target", pa.string()),
        pa.field("model_version", pa.string()),
    ]
)
QUERY_FIELDS = [
    pa.field("query_file", pa.string()),
    pa.field("query_path", pa.string()),
    pa.field("query_id", pa.string()),
    pa.field("n_genes_in_file", pa.int64()),
    pa.field("n_landmarks_used", pa.int64()),
    pa.field("missing_genes", pa.list_(pa.string())),
    pa.field("platform", pa.string()),
    pa.field("transform", pa.string()),
    pa.field("imputed_genes", pa.list_(pa.string())),
    pa.field("warnings", pa.list_(pa.string())),
    pa.field("model_version", pa.string()),
]


def query_warnings(query, i: int) -> list[str]:
    """The file's warnings and those of its ``i``-th profile (treatment group)."""
    own = query.profile_warnings[i] if i < len(query.profile_warnings) else []
    return [*query.warnings, *own]


def query_schema(dim: int) -> pa.Schema:
    from l1000_assets.core.embeddings.vectors import DIM_KEY, EMBEDDING_COLUMN

    return pa.schema(
        [*QUERY_FIELDS, pa.field(EMBEDDING_COLUMN, pa.list_(pa.float32(), dim))],
        metadata={DIM_KEY: str(dim).encode()},
    )


def _query_table(result: ReadAcrossResult, version: str, dim: int) -> pa.Table:
    from l1000_assets.core.embeddings.vectors import vector_array

    q = result.query
    n = len(q.profile_ids)
    return pa.table(
        [
            pa.array([q.path.name] * n),
            pa.array([str(q.path.resolve())] * n),
            pa.array(q.profile_ids, pa.string()),
            pa.array([q.n_genes_in_file] * n, pa.int64()),
            pa.array([q.n_landmarks_used] * n, pa.int64()),
            pa.array([list(q.missing)] * n, pa.list_(pa.string())),
            pa.array([q.platform] * n),
            pa.array([q.transform] * n),
            pa.array([list(q.imputed)] * n, pa.list_(pa.string())),
            pa.array([query_warnings(q, i) for i in range(n)], pa.list_(pa.string())),
            pa.array([version] * n),
            vector_array(result.embeddings.reshape(n, dim)),
        ],
        schema=query_schema(dim),
    )


def write_results(
    results_path: str | Path,
    queries_path: str | Path,
    new: Sequence[ReadAcrossResult],
    *,
    replaced: Iterable[str | Path],
    version: str,
    dim: int,
) -> tuple[int, int]:
    """Merge ``new`` results into the results and queries tables, atomically.

    Rows of the ``replaced`` query files (those just processed, whether they succeeded or
    not) and of query files that no longer exist are dropped; other files' rows stay.
    Returns the rows of the two tables.
    """
    from l1000_assets.core.atomic import atomic_file

    drop = {str(Path(p).resolve()) for p in replaced}
    tables = {}
    for path, schema, fresh in (
        (
            Path(results_path),
            RESULT_SCHEMA,
            [pa.Table.from_pandas(r.hits, schema=RESULT_SCHEMA, preserve_index=False) for r in new],
        ),
        (Path(queries_path), query_schema(dim), [_query_table(r, version, dim) for r in new]),
    ):
        old = pq.read_table(path) if path.exists() else schema.empty_table()
        if old.schema.remove_metadata() != schema.remove_metadata():
            old = schema.empty_table()  # another model's width: recomputed, not merged
        keep = [p not in drop and Path(p).exists() for p in old.column("query_path").to_pylist()]
        merged = pa.concat_tables([old.filter(pa.array(keep, pa.bool_())).cast(schema), *fresh])
        with atomic_file(path) as tmp:
            pq.write_table(merged, tmp)
        tables[path] = merged.num_rows
    return tables[Path(results_path)], tables[Path(queries_path)]
