"""Read-across with the user's own profiles: ranked hits for every query file, and the
perturbagen map with the queries placed on it."""

import time
from typing import Literal

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from l1000_assets.core.embeddings.vectors import (
    read_embeddings,
)
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.progress import ProgressReporter
from l1000_assets.core.readacross.map import layout, place_queries, plot_map, query_points
from l1000_assets.core.readacross.results import RESULT_SCHEMA
from l1000_assets.lib.keys import (
    ALL_PARTITIONS,
    EMBEDDING_MODEL,
    PERTURBAGEN_EMBEDDINGS,
    PERTURBAGEN_MAP,
    READ_ACROSS_GROUP,
    READ_ACROSS_RESULTS,
    RELEASE_METADATA,
)
from l1000_assets.lib.metadata import column_schema, png_markdown, table_preview
from l1000_assets.lib.partitions import served_model_mapping
from l1000_assets.lib.resources import LakeResource


class ReadAcrossConfig(dg.Config):
    files: list[str] = Field(
        default_factory=list,
        description=(
            "Query files to (re)process, absolute or relative to the queries folder. Empty: "
            "every query file in the folder. Listed files that fail fail the run; with an empty "
            "list, bad files are reported and skipped."
        ),
    )
    top: int = Field(default=20, ge=1, le=10_000, description="Perturbagens kept per profile.")
    max_missing: int = Field(
        default=50,
        ge=0,
        le=977,
        description=(
            "Landmark genes a query file may lack (set to 0, no change); more is refused."
        ),
    )
    allow_unknown_genes: bool = Field(
        default=False,
        description=(
            "Skip gene identifiers the genes table does not know instead of refusing the file."
        ),
    )
    allow_non_zscores: bool = Field(
        default=False,
        description=(
            "Rank profiles that plainly are not z-scores (no negative value, only whole "
            "numbers, or a median far from 0) instead of refusing the file."
        ),
    )
    cell_line: str | None = Field(
        default=None,
        description=(
            "Rank against one cell line's perturbagen embeddings (default: over all cell lines)."
        ),
    )
    pert_type: str | None = Field(
        default=None, description=("Only perturbagens of this type (trt_cp, trt_sh, trt_oe...).")
    )


def _stage_progress(context: dg.AssetExecutionContext, name: str):
    def reporter(stage: str) -> ProgressReporter:
        return ProgressReporter(lambda m: context.log.info(f"{name}: {stage} {m}"), interval=10.0)

    return reporter


def _read_across(lake: LakeResource, config: ReadAcrossConfig):
    from l1000_assets.core.readacross.ranking import ReadAcross

    try:
        return ReadAcross(
            lake.model_dir,
            lake.metadata_files("genes"),
            lake.metadata_files("perturbagens"),
            lake.perturbagen_embeddings_path,
            cell=config.cell_line,
            pert_type=config.pert_type,
        )
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc


@dg.asset(
    key=READ_ACROSS_RESULTS,
    group_name=READ_ACROSS_GROUP,
    deps=[
        PERTURBAGEN_EMBEDDINGS,
        dg.AssetDep(EMBEDDING_MODEL, partition_mapping=served_model_mapping()),
        dg.AssetDep(RELEASE_METADATA, partition_mapping=ALL_PARTITIONS),
    ],
    kinds={"tensorflow", "parquet"},
    pool="read_across",
    description=(
        "The user's own profiles (GCT, GCTX, CSV or TSV of level-4 landmark z-scores, "
        "or, with a manifest <file>.json beside them, RNA-seq/TempO-Seq counts with a sample "
        "sheet, DE tables or level-3 plates, dropped in the queries folder) embedded by the "
        "served model (embedding_model[all]: every perturbagen trained) and ranked against "
        "the perturbagen embeddings: query, rank, perturbagen, similarity, MOA, target. "
        "Also each query's embedding, gene coverage, imputed landmarks, transform and "
        "warnings. The read_across_queries sensor "
        "runs it for every new or changed file."
    ),
)
def read_across_results(
    context: dg.AssetExecutionContext, config: ReadAcrossConfig, lake: LakeResource
) -> dg.MaterializeResult:
    from l1000_assets.core.readacross.folder import queries_in, query_paths
    from l1000_assets.core.readacross.manifest import read_manifest
    from l1000_assets.core.readacross.platforms.inputs import PlatformOptions
    from l1000_assets.core.readacross.query_files import QueryOptions
    from l1000_assets.core.readacross.results import write_results

    folder = lake.queries_dir
    explicit = bool(config.files)
    paths = query_paths(folder, config.files, queries_in)
    context.log.info(f"{len(paths)} query file(s) from {folder if not explicit else 'config'}")
    engine = _read_across(lake, config)
    options = QueryOptions(
        max_missing=config.max_missing,
        allow_unknown=config.allow_unknown_genes,
        allow_non_zscores=config.allow_non_zscores,
    )
    results, failed, summary = [], {}, []
    for path in paths:
        t0 = time.perf_counter()
        try:
            manifest = read_manifest(path)
            result = engine.run(
                path,
                top=config.top,
                options=options,
                progress=_stage_progress(context, path.name),
                platform=manifest.platform,
                samples=manifest.samples,
                gene_map=manifest.gene_map,
                platform_options=PlatformOptions(**manifest.options),
            )
        except L1000InputError as exc:
            context.log.error(str(exc))
            failed[str(path)] = exc.problem
            continue
        q = result.query
        note = (
            f"{path}: {len(q.profile_ids)} profile(s), {q.n_landmarks_used}/978 landmark "
            f"genes"
            + (
                f", missing (set to 0): {engine.genes.describe_list(q.missing)}"
                if q.missing
                else ""
            )
        )
        context.log.info(f"{note}; platform {q.platform}, transform: {q.transform}")
        if q.imputed:
            context.log.info(f"{path}: {len(q.imputed)} landmark(s) imputed")
        for warning in q.warnings:
            context.log.warning(f"{path}: {warning}")
        for qid, warnings in zip(q.profile_ids, q.profile_warnings):
            for warning in warnings:
                context.log.warning(f"{path}: {qid}: {warning}")
        results.append(result)
        top1 = result.hits[result.hits["rank"] == 1]
        summary.append(
            {
                "file": path.name,
                "profiles": len(q.profile_ids),
                "platform": q.platform,
                "landmarks_used": q.n_landmarks_used,
                "imputed": len(q.imputed),
                "top_hit": ", ".join(top1["pert_iname"].astype(str).head(3)),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
    n_rows, n_queries = write_results(
        lake.read_across_dir / "results.parquet",
        lake.read_across_dir / "queries.parquet",
        results,
        replaced=paths,
        version=engine.version,
        dim=int(engine.references.vectors.shape[1]),
    )
    if explicit and failed:
        raise dg.Failure(
            f"{len(failed)} query file(s) refused: "
            + "; ".join(f"{p}: {m}" for p, m in failed.items()),
            metadata={"failed": dg.MetadataValue.json(failed)},
        )
    preview = pd.concat([r.hits.head(10) for r in results]) if results else pd.DataFrame()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": n_rows,
            "query_profiles": n_queries,
            "files_processed": len(results),
            "files_refused": dg.MetadataValue.json(failed),
            "model_version": engine.version,
            "model_split": engine.card.get("split", lake.served_split),
            "model_n_train_perturbagens": engine.card.get(
                "n_train_perturbagens", engine.card.get("n_classes")
            ),
            "queries_dir": dg.MetadataValue.path(str(folder)),
            "files": table_preview(pd.DataFrame(summary), rows=len(summary)) if summary else "none",
            "preview": table_preview(
                preview[["query_id", "rank", "pert_iname", "pert_type", "similarity", "moa"]],
                rows=len(preview),
            )
            if len(preview)
            else "none",
            "path": dg.MetadataValue.path(str(lake.read_across_dir / "results.parquet")),
            "dagster/column_schema": column_schema(RESULT_SCHEMA),
        }
    )


class PerturbagenMapConfig(dg.Config):
    method: Literal["tsne", "pca"] = Field(
        default="tsne",
        description=("t-SNE (scikit-learn; neighbourhoods, slower) or PCA (linear, fast)."),
    )
    max_perturbagens: int = Field(
        default=2000,
        ge=10,
        description=("Perturbagens drawn (seeded) for the map; query profiles are always added."),
    )
    seed: int = Field(default=0)


@dg.asset(
    key=PERTURBAGEN_MAP,
    group_name=READ_ACROSS_GROUP,
    deps=[PERTURBAGEN_EMBEDDINGS, READ_ACROSS_RESULTS],
    kinds={"scikitlearn", "matplotlib"},
    description=(
        "A 2-D map (t-SNE or PCA) of the perturbagen embeddings over all cell lines, "
        "coloured by perturbagen type and by MOA, fitted on the perturbagens alone (seeded: a "
        "fixed map), with the user's query profiles placed on it among their nearest "
        "perturbagens (no refit: the map does not move when queries are added)."
    ),
)
def perturbagen_map(
    context: dg.AssetExecutionContext, config: PerturbagenMapConfig, lake: LakeResource
) -> dg.MaterializeResult:
    from l1000_assets.core.readacross.ranking import read_annotations

    if not lake.perturbagen_embeddings_path.exists():
        raise dg.Failure("materialize perturbagen_embeddings first")
    meta, x = read_embeddings(
        lake.perturbagen_embeddings_path, ["pert_id", "pert_iname", "pert_type", "cell_id"]
    )
    perts = meta.to_pandas()
    keep = perts["cell_id"].isna().to_numpy()
    perts, x = perts[keep].reset_index(drop=True), x[keep]
    perts = perts.merge(
        read_annotations(lake.metadata_files("perturbagens")), on="pert_id", how="left"
    )
    rng = np.random.default_rng(config.seed)
    if len(perts) > config.max_perturbagens:
        pick = np.sort(rng.choice(len(perts), config.max_perturbagens, replace=False))
        perts, x = perts.iloc[pick].reset_index(drop=True), x[pick]
    queries, qx = query_points(lake.read_across_dir / "queries.parquet")
    png = lake.read_across_dir / "perturbagen_map.png"
    t0 = time.perf_counter()
    # The map is fitted on the perturbagens alone (seeded: the same embeddings give the same
    # map), and the queries placed on it, so adding a query does not reshuffle the map.
    xy = layout(x, config.method, config.seed)
    qxy = place_queries(x, xy, qx)
    plot_map(perts, xy, queries, qxy, png, config.method)
    context.log.info(
        f"{config.method} map of {len(x)} perturbagens and {len(qx)} query "
        f"profile(s) in {time.perf_counter() - t0:.1f} s"
    )
    return dg.MaterializeResult(
        metadata={
            "map": png_markdown(png, "perturbagen map"),
            "method": config.method,
            "perturbagens": len(x),
            "query_profiles": len(qx),
            "path": dg.MetadataValue.path(str(png)),
        }
    )
