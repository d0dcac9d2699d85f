"""Helpers that turn files and tables into Dagster metadata."""

from __future__ import annotations

import base64
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from l1000_assets.core.hashing import sha256_file


def file_metadata(path: Path, *, hash_bytes: bool = False) -> dict[str, dg.MetadataValue]:
    """Path and size of a file (and its SHA-256 for small files when asked)."""
    out: dict[str, dg.MetadataValue] = {
        "path": dg.MetadataValue.path(str(path)),
        "size_mb": dg.MetadataValue.float(round(path.stat().st_size / 1e6, 2)),
    }
    if hash_bytes:
        out["sha256"] = dg.MetadataValue.text(sha256_file(path))
    return out


def png_markdown(path: Path | bytes, title: str) -> dg.MetadataValue:
    """A PNG (a file, or its bytes) embedded in markdown metadata (the UI shows it inline)."""
    raw = path if isinstance(path, bytes) else Path(path).read_bytes()
    data = base64.b64encode(raw).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{data})")


# -- tables: column schemas from Arrow, previews, per-partition row counts -------------------

#: What each column the assets write means (the UI's column schema shows it beside the type).
COLUMN_DOCS: dict[str, str] = {
    "inst_id": "Profile (instance) id of the release.",
    "sig_id": "Signature id: cell:pert_id:dose unit:time unit, e.g. A549:BRD-K12345:10µM:24h.",
    "pert_id": "Perturbagen id (BRD-... compounds, TRCN... shRNAs, CGS-<gene> shRNA genes).",
    "pert_iname": "Perturbagen name: the compound, or the gene symbol of a genetic perturbagen.",
    "pert_type": "trt_cp compound, trt_sh shRNA, trt_sh.cgs shRNAs of one gene, trt_oe cDNA.",
    "cell_id": "Cell line (null in perturbagen rows over all cell lines).",
    "release": "The release the row comes from.",
    "pert_dose": "Dose, in pert_dose_unit.",
    "pert_dose_unit": "Dose unit as the release writes it (µM, µL, %).",
    "pert_time": "Time after treatment, in pert_time_unit.",
    "pert_time_unit": "Time unit (h).",
    "det_plate": "Detection plate.",
    "det_well": "Well on the detection plate.",
    "rna_plate": "RNA plate.",
    "rna_well": "Well on the RNA plate.",
    "profile_class": "control, compound, genetic or other (controls are not in the lake).",
    "landmarks": "The 978 landmark z-scores, in the genes table's landmark order.",
    "embedding": "Unit-length embedding (float32[d]) by the served model.",
    "signature": "MODZ-collapsed landmark z-scores of the signature (CMap level 5).",
    "zscores": "Mean landmark z-scores of the perturbagen's signatures.",
    "n_replicates": "Replicate profiles averaged into the signature.",
    "n_profiles": "Profiles averaged (or held) by the row.",
    "n_signatures": "Signatures among them.",
    "n_cell_lines": "Cell lines among them.",
    "moa": "Mechanism of action, where known; several are separated by |.",
    "target": "Target gene(s), where known; several are separated by |.",
    "model_version": "Version (card hash) of the model that embedded the row.",
    "split": "train, validation (checkpoint selection only) or test (held out).",
    "seed": "Seed of the split (null for the all split: every perturbagen trained).",
    "fold": "Fold of the perturbagen in the split's hash.",
    "query_file": "Query file the profile was read from.",
    "query_path": "Full path of the query file.",
    "query_id": "Profile (column) id in the query file.",
    "rank": "1 = most similar.",
    "similarity": "Cosine similarity of the embeddings (dot product of unit vectors).",
    "protocol": "Evaluation protocol (same_perturbagen: profiles of one perturbagen; ...).",
    "group": "Perturbagen group the metric is over (all, trt_cp, trt_sh, ...).",
    "method": "embedding (the trained model) or zscore (the baseline).",
    "metric": "auc, recall_top_<q>, mcc, ...",
    "value": "The metric's value.",
    "n_queries": "Queries the metric pools.",
    "n_positives": "Positive pairs the metric pools.",
    "gene_id": "Entrez gene id.",
    "gene_symbol": "Gene symbol.",
    "is_landmark": "One of the 978 measured landmark genes.",
    "landmark_index": "Position in the lake's landmark vectors.",
}


def arrow_type_name(kind: pa.DataType) -> str:
    """A short type name: ``float32[978]`` for a fixed-size list, ``list<string>``..."""
    if pa.types.is_fixed_size_list(kind):
        return f"{arrow_type_name(kind.value_type)}[{kind.list_size}]"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return f"list<{arrow_type_name(kind.value_type)}>"
    if pa.types.is_dictionary(kind):
        return arrow_type_name(kind.value_type)
    names = {
        "float": "float32",
        "double": "float64",
        "large_string": "string",
        "halffloat": "float16",
    }
    return names.get(str(kind), str(kind))


def column_schema(schema: pa.Schema, docs: dict[str, str] | None = None) -> dg.TableSchema:
    """The Dagster column schema of an Arrow schema: every column, its type, nullability,
    and what it means (``docs`` over :data:`COLUMN_DOCS`)."""
    docs = {**COLUMN_DOCS, **(docs or {})}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                f.name,
                arrow_type_name(f.type),
                description=docs.get(f.name),
                constraints=None if f.nullable else dg.TableColumnConstraints(nullable=False),
            )
            for f in schema
            if not f.name.startswith("__index_level_")
        ]
    )


def parquet_column_schema(path: Path, docs: dict[str, str] | None = None) -> dg.TableSchema:
    """:func:`column_schema` of a Parquet file's Arrow schema (read from its footer)."""
    return column_schema(pq.read_schema(path), docs)


def _cell(value):
    if isinstance(value, np.generic):  # numpy scalars (np.float64 is also a float)
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if value != value else round(value, 4)  # NaN -> empty
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, list | tuple | np.ndarray):
        items = list(value)
        shown = ", ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in items[:4])
        return f"[{shown}{', ...' if len(items) > 4 else ''}] ({len(items)})"
    return str(value)


def table_preview(df: pd.DataFrame, rows: int = 5) -> dg.MetadataValue:
    """The first rows of a table as a ``MetadataValue.table`` (the UI renders a table, with
    the columns' types): vectors are shortened to their first values and length."""
    head = df.head(rows)
    try:
        schema = column_schema(pa.Schema.from_pandas(head, preserve_index=False))
    except (pa.ArrowException, TypeError, ValueError):  # mixed object columns: by dtype
        schema = dg.TableSchema(
            columns=[dg.TableColumn(str(c), str(t)) for c, t in head.dtypes.items()]
        )
    records = [
        dg.TableRecord({c: _cell(v) for c, v in zip(head.columns, row, strict=True)})
        for row in head.itertuples(index=False, name=None)
    ]
    return dg.MetadataValue.table(records, schema=schema)


def partition_row_counts(context: dg.AssetExecutionContext, counts: dict[str, int]) -> None:
    """``dagster/row_count`` of each partition materialized: its own rows, not the run's
    total (a run of several cell lines records one materialization per partition)."""
    for key, n in counts.items():
        context.add_asset_metadata({"dagster/row_count": int(n)}, partition_key=key)
