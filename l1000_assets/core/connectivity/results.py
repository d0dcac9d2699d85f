"""The gene-set query results tables (hits, queries, hit statistics), merged atomically.

``results.parquet``     the top hits of every query: query, method, direction, level,
                        rank, perturbagen, annotations, cell scope, scores
``queries.parquet``     one row per query: its genes sorted (valid, outside the space,
                        invalid), the settings it ran with, and its error if refused
``enrichment.parquet``  MOA and target statistics on each query's hits

A new run replaces the rows of the query files it processed (and drops those of files that
no longer exist); other files' rows stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from l1000_assets.core.atomic import atomic_file

if TYPE_CHECKING:
    from l1000_assets.core.connectivity.engine import QueryFailure, QueryResult

QUERY_KEY = [
    pa.field("query_file", pa.string()),
    pa.field("query_path", pa.string()),
    pa.field("query_name", pa.string()),
]
RUN_FIELDS = [
    pa.field("method", pa.string()),
    pa.field("direction", pa.string()),
    pa.field("level", pa.string()),
]
RANKING_FIELDS = [
    pa.field("rank", pa.int64()),
    pa.field("pert_id", pa.string()),
    pa.field("pert_iname", pa.string()),
    pa.field("pert_type", pa.string()),
    pa.field("moa", pa.string()),
    pa.field("target", pa.string()),
    pa.field("cell_id", pa.string()),
    pa.field("sig_id", pa.string()),
    pa.field("n_cell_lines", pa.int64()),
    pa.field("n_signatures", pa.int64()),
    pa.field("score", pa.float64()),
    pa.field("wtcs", pa.float64()),
    pa.field("ncs", pa.float64()),
    pa.field("tau", pa.float64()),
    pa.field("z_up", pa.float64()),
    pa.field("z_down", pa.float64()),
    pa.field("fdr_up", pa.float64()),
    pa.field("fdr_down", pa.float64()),
    pa.field("similarity", pa.float64()),
]
RANKING_COLUMNS = [f.name for f in RANKING_FIELDS]
VERSION_FIELDS = [
    pa.field("store_version", pa.string()),
    pa.field("reference_version", pa.string()),
]
RESULT_SCHEMA = pa.schema([*QUERY_KEY, *RUN_FIELDS, *RANKING_FIELDS, *VERSION_FIELDS])
_GENES = pa.list_(pa.string())
QUERY_SCHEMA = pa.schema(
    [
        *QUERY_KEY,
        pa.field("query_files", _GENES),
        *RUN_FIELDS,
        pa.field("cell_scope", pa.string()),
        pa.field("pert_type_scope", pa.string()),
        pa.field("n_up", pa.int64()),
        pa.field("n_down", pa.int64()),
        *(
            pa.field(f"{side}_{kind}", _GENES)
            for side in ("up", "down")
            for kind in ("valid", "outside", "invalid")
        ),
        pa.field("seconds", pa.float64()),
        pa.field("error", pa.string()),
        *VERSION_FIELDS,
    ]
)
ENRICHMENT_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        *QUERY_KEY,
        pa.field("method", pa.string()),
        pa.field("direction", pa.string()),
        pa.field("test", pa.string()),
        pa.field("term_kind", pa.string()),
        pa.field("term", pa.string()),
        pa.field("n_hits_term", pa.int64()),
        pa.field("n_hits", pa.int64()),
        pa.field("n_term", pa.int64()),
        pa.field("n_background", pa.int64()),
        pa.field("fold_enrichment", pa.float64()),
        pa.field("es", pa.float64()),
        pa.field("nes", pa.float64()),
        pa.field("p_value", pa.float64()),
        pa.field("fdr", pa.float64()),
        pa.field("hits", _GENES),
    ]
)


def as_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """``frame``'s columns of ``schema`` as an Arrow table of that schema (absent columns
    null)."""
    n = len(frame)
    arrays = []
    for f in schema:
        if f.name not in frame.columns:
            arrays.append(pa.nulls(n, f.type))
            continue
        values = frame[f.name].astype(object).where(frame[f.name].notna(), None).tolist()
        if pa.types.is_integer(f.type):
            values = [None if v is None else int(v) for v in values]
        elif pa.types.is_floating(f.type):
            values = [None if v is None else float(v) for v in values]
        elif pa.types.is_string(f.type):
            values = [None if v is None else str(v) for v in values]
        arrays.append(pa.array(values, f.type))
    return pa.table(arrays, schema=schema)


def merge_tables(
    tables: dict[Path, tuple[pa.Schema, Sequence[pa.Table]]], replaced: Iterable[str | Path]
) -> dict[Path, int]:
    """Merge fresh rows into each results file, atomically: rows whose ``query_path`` is in
    ``replaced`` (the files just processed, whether they succeeded or not) or no longer
    exists are dropped first. Returns the rows of each file."""
    drop = {str(Path(p).resolve()) for p in replaced}
    rows = {}
    for path, (schema, fresh) in tables.items():
        old = pq.read_table(path) if path.exists() else schema.empty_table()
        if old.schema.remove_metadata() != schema.remove_metadata():
            old = schema.empty_table()  # an older layout: recomputed, not merged
        keep = [p not in drop and Path(p).exists() for p in old.column("query_path").to_pylist()]
        merged = pa.concat_tables([old.filter(pa.array(keep, pa.bool_())), *fresh])
        with atomic_file(path) as tmp:
            pq.write_table(merged, tmp)
        rows[path] = merged.num_rows
    return rows


STORE_DIR = "signatures"
REFERENCE_DIR = "reference"
RESULTS_FILE = "results.parquet"
QUERIES_FILE = "queries.parquet"
ENRICHMENT_FILE = "enrichment.parquet"
READ_ACROSS_ENRICHMENT_FILE = "read_across_enrichment.parquet"
"""Layout under the connectivity directory of the lake."""


def _query_key(files: Sequence[Path], name: str | None) -> dict[str, object]:
    path = Path(files[0])
    return {
        "query_file": path.name,
        "query_path": str(path.resolve()),
        "query_name": name,
        "query_files": [str(Path(f).resolve()) for f in files],
    }


def result_tables(
    results: Sequence[QueryResult],
    failures: Sequence[QueryFailure],
    *,
    store_version: str,
    reference_version: str | None,
) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The hits, queries and enrichment rows of a run (results of one or more directions;
    each query's row in the queries table once per method and direction)."""
    versions = {"store_version": store_version, "reference_version": reference_version}
    hits, queries, enrichment = [], [], []
    for r in results:
        o = r.options
        key = _query_key(r.query.files, r.query.name)
        run = {"method": o.method, "direction": o.direction, "level": o.level}
        hits.append(
            r.hits.assign(**{k: v for k, v in key.items() if k != "query_files"}, **run, **versions)
        )
        genes = r.query.genes_report()
        queries.append(
            {
                **key,
                **run,
                "cell_scope": o.cell,
                "pert_type_scope": o.pert_type,
                "n_up": len(genes["up_valid"]),
                "n_down": len(genes["down_valid"]),
                **genes,
                "seconds": r.seconds,
                "error": None,
                **versions,
            }
        )
        if len(r.enrichment):
            enrichment.append(
                r.enrichment.assign(
                    source="connectivity",
                    **{k: v for k, v in key.items() if k != "query_files"},
                    method=o.method,
                    direction=o.direction,
                )
            )
    for f in failures:
        queries.append({**_query_key(f.files, f.name), "error": f.message, **versions})
    frame = pd.concat(hits, ignore_index=True) if hits else pd.DataFrame()
    return (
        as_table(frame, RESULT_SCHEMA),
        as_table(pd.DataFrame(queries), QUERY_SCHEMA),
        as_table(
            pd.concat(enrichment, ignore_index=True) if enrichment else pd.DataFrame(),
            ENRICHMENT_SCHEMA,
        ),
    )
