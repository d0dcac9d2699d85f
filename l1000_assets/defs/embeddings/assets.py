"""Embeddings of the lake: every profile embedded by the current model, its signature and
perturbagen aggregates, and the MODZ z-score signatures (the CMap level-5 baseline)."""

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from l1000_assets.core.embeddings.aggregates import (
    write_perturbagen_embeddings,
    write_profile_embeddings,
    write_signature_embeddings,
)
from l1000_assets.core.embeddings.modz import write_zscore_signatures
from l1000_assets.core.embeddings.vectors import model_version, read_embeddings
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.lake.read import read_profile_gene_ids
from l1000_assets.core.progress import ProgressReporter
from l1000_assets.lib.keys import (
    ALL_PARTITIONS,
    EMBEDDING_MODEL,
    EMBEDDINGS_GROUP,
    LANDMARK_PROFILES,
    PERTURBAGEN_EMBEDDINGS,
    PROFILE_EMBEDDINGS,
    SIGNATURE_EMBEDDINGS,
    ZSCORE_SIGNATURES,
)
from l1000_assets.lib.lake import card_path, profile_embedding_files
from l1000_assets.lib.metadata import parquet_column_schema, partition_row_counts, table_preview
from l1000_assets.lib.partitions import cell_line_partitions, served_model_mapping
from l1000_assets.lib.resources import LakeResource


class ProfileEmbeddingsConfig(dg.Config):
    batch_size: int = Field(
        default=16_384, ge=64, description="Profiles read and embedded per batch."
    )


@dg.asset(
    key=PROFILE_EMBEDDINGS,
    group_name=EMBEDDINGS_GROUP,
    partitions_def=cell_line_partitions,
    deps=[
        LANDMARK_PROFILES,
        dg.AssetDep(EMBEDDING_MODEL, partition_mapping=served_model_mapping()),
    ],
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"tensorflow", "parquet"},
    description=(
        "Every lake profile of a cell line embedded by the served model (embedding_model[all], "
        "trained on every perturbagen, unless L1000_SERVED_SPLIT names another split; "
        "L2-normalized, d floats): one Parquet file per cell line with the profile metadata and a "
        "fixed-size float32[d] embedding column. Several cell lines in one run share one "
        "model load. Replaced atomically."
    ),
)
def profile_embeddings(
    context: dg.AssetExecutionContext, config: ProfileEmbeddingsConfig, lake: LakeResource
) -> dg.MaterializeResult:
    from l1000_assets.core.model.network import embed
    from l1000_assets.core.model.store import load_card, load_embedding

    # Every key checked (and its paths kept under the lake) before anything is read.
    paths = {
        c: (lake.landmark_dir(c), lake.profile_embeddings_path(c)) for c in context.partition_keys
    }
    card = card_path(lake)
    version = model_version(card)
    served = load_card(lake.model_dir)
    gene_order = served["gene_order"]
    model = load_embedding(lake.model_dir)
    rows = {}
    for cell, (cell_dir, out_path) in paths.items():
        files = sorted(cell_dir.glob("*.parquet"))
        if not files:
            raise dg.Failure(
                f"no landmark profiles for cell line {cell!r} under "
                f"{cell_dir}: materialize landmark_profiles"
            )
        for path in files:
            if read_profile_gene_ids(path) != gene_order:
                raise dg.Failure(
                    f"{path}: model/gene-order mismatch: the lake's landmark "
                    f"order differs from the model card's gene_order "
                    f"({card}); train the model on this lake again"
                )
        try:
            rows[cell] = write_profile_embeddings(
                files,
                lambda x: embed(model, x),
                out_path,
                version=version,
                batch_size=config.batch_size,
                progress=ProgressReporter(
                    lambda m, c=cell: context.log.info(f"{c}: {m}"), interval=10.0
                ),
            )
        except L1000InputError as exc:
            raise dg.Failure(str(exc)) from exc
    table = pd.DataFrame({"cell_id": list(rows), "profiles": list(rows.values())})
    partition_row_counts(context, rows)
    return dg.MaterializeResult(
        metadata={
            "rows_in_run": int(table["profiles"].sum()),
            "model_version": version,
            "model_split": served.get("split", lake.served_split),
            "model_n_train_perturbagens": served.get("n_train_perturbagens", served["n_classes"]),
            "embedding_dim": int(model.output_shape[-1]),
            "profiles_per_cell_line": table_preview(table, rows=len(table)),
            "path": dg.MetadataValue.path(str(lake.profile_embeddings_dir)),
            "dagster/column_schema": parquet_column_schema(next(iter(paths.values()))[1]),
        }
    )


@dg.asset(
    key=SIGNATURE_EMBEDDINGS,
    group_name=EMBEDDINGS_GROUP,
    deps=[dg.AssetDep(PROFILE_EMBEDDINGS, partition_mapping=ALL_PARTITIONS)],
    kinds={"parquet"},
    description=(
        "One row per signature (perturbagen x cell line x dose x time): the mean of its "
        "profile embeddings, re-normalized to unit length, with the replicate count. sig_id "
        "is cell:pert:dose unit:time unit."
    ),
)
def signature_embeddings(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> dg.MaterializeResult:
    try:
        n = write_signature_embeddings(
            profile_embedding_files(lake), lake.signature_embeddings_path, log=context.log.info
        )
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc
    meta, _ = read_embeddings(lake.signature_embeddings_path, ["n_replicates"])
    replicates = meta.column("n_replicates").to_numpy()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "median_replicates": float(np.median(replicates)) if n else 0.0,
            "single_replicate_signatures": int((replicates == 1).sum()),
            "path": dg.MetadataValue.path(str(lake.signature_embeddings_path)),
            "dagster/column_schema": parquet_column_schema(lake.signature_embeddings_path),
        }
    )


@dg.asset(
    key=PERTURBAGEN_EMBEDDINGS,
    group_name=EMBEDDINGS_GROUP,
    deps=[dg.AssetDep(PROFILE_EMBEDDINGS, partition_mapping=ALL_PARTITIONS)],
    kinds={"parquet"},
    description=(
        "One row per perturbagen over all cell lines (cell_id null) and one per perturbagen "
        "and cell line: the re-normalized mean of its profile embeddings, with profile, "
        "signature and cell line counts."
    ),
)
def perturbagen_embeddings(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> dg.MaterializeResult:
    try:
        n = write_perturbagen_embeddings(
            profile_embedding_files(lake), lake.perturbagen_embeddings_path, log=context.log.info
        )
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc
    meta, _ = read_embeddings(lake.perturbagen_embeddings_path, ["pert_type", "cell_id"])
    df = meta.to_pandas()
    overall = df[df["cell_id"].isna()]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n,
            "perturbagens": len(overall),
            "perturbagens_by_type": table_preview(
                by_type := overall["pert_type"]
                .value_counts()
                .rename_axis("pert_type")
                .reset_index(name="perturbagens"),
                rows=len(by_type),
            ),
            "path": dg.MetadataValue.path(str(lake.perturbagen_embeddings_path)),
            "dagster/column_schema": parquet_column_schema(lake.perturbagen_embeddings_path),
        }
    )


@dg.asset_check(
    asset=PERTURBAGEN_EMBEDDINGS,
    blocking=True,
    description="Every perturbagen embedding is finite and of unit length, and "
    "each perturbagen has exactly one all-cell-line row.",
)
def perturbagen_embeddings_unit_length(lake: LakeResource) -> dg.AssetCheckResult:
    meta, x = read_embeddings(lake.perturbagen_embeddings_path, ["pert_id", "cell_id"])
    df = meta.to_pandas()
    norms = np.linalg.norm(x, axis=1)
    overall = df.loc[df["cell_id"].isna(), "pert_id"]
    bad = int((~np.isfinite(x).all(axis=1) | (np.abs(norms - 1) > 1e-4)).sum())
    return dg.AssetCheckResult(
        passed=bad == 0 and overall.is_unique and set(overall) == set(df["pert_id"]),
        metadata={"not_unit_length": bad, "rows": len(df), "perturbagens": int(overall.nunique())},
    )


class ZscoreSignaturesConfig(dg.Config):
    memory_limit_mb: int = Field(
        default=1024,
        ge=64,
        description=(
            "DuckDB memory for sorting a cell line's profiles by signature (spills to disk "
            "beyond it)."
        ),
    )


@dg.asset(
    key=ZSCORE_SIGNATURES,
    group_name=EMBEDDINGS_GROUP,
    partitions_def=cell_line_partitions,
    deps=[LANDMARK_PROFILES],
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"parquet", "duckdb"},
    description=(
        "MODZ-collapsed level-4 z-scores per signature (CMap level 5), the z-score "
        "baseline: one Parquet file per cell line with the same sig_id as "
        "signature_embeddings and a fixed-size float32[978] signature column."
    ),
)
def zscore_signatures(
    context: dg.AssetExecutionContext, config: ZscoreSignaturesConfig, lake: LakeResource
) -> dg.MaterializeResult:
    # Every key checked (and its paths kept under the lake) before anything is read.
    paths = {
        c: (lake.landmark_dir(c), lake.zscore_signatures_path(c)) for c in context.partition_keys
    }
    counts = {}
    for cell, (cell_dir, out_path) in paths.items():
        files = sorted(cell_dir.glob("*.parquet"))
        if not files:
            raise dg.Failure(
                f"no landmark profiles for cell line {cell!r}: materialize landmark_profiles"
            )
        counts[cell] = write_zscore_signatures(
            files,
            out_path,
            memory_limit_mb=config.memory_limit_mb,
            progress=ProgressReporter(
                lambda m, c=cell: context.log.info(f"{c}: {m}"), interval=10.0
            ),
        )
    table = pd.DataFrame({"cell_id": list(counts), "signatures": list(counts.values())})
    partition_row_counts(context, counts)
    return dg.MaterializeResult(
        metadata={
            "rows_in_run": int(table["signatures"].sum()),
            "signatures_per_cell_line": table_preview(table, rows=len(table)),
            "path": dg.MetadataValue.path(str(lake.zscore_signatures_dir)),
            "dagster/column_schema": parquet_column_schema(next(iter(paths.values()))[1]),
        }
    )
