"""Embeddings of the lake (group "embeddings") and read-across with the user's own profiles
(group "read_across")."""

import time
from pathlib import Path
from typing import Literal

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from l1000_assets.core.embeddings import (EMBEDDING_COLUMN, model_version, normalize_rows,
                                          read_embeddings, write_perturbagen_embeddings,
                                          write_profile_embeddings, write_signature_embeddings,
                                          write_zscore_signatures)
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.ingest import read_profile_gene_ids
from l1000_assets.core.progress import ProgressReporter
from l1000_assets.defs.lake.assets import LANDMARK_PROFILES
from l1000_assets.defs.model.assets import EMBEDDING_MODEL
from l1000_assets.defs.partitions import cell_line_partitions
from l1000_assets.defs.releases.ingest import RELEASE_METADATA
from l1000_assets.lib.metadata import png_markdown
from l1000_assets.lib.resources import LakeResource

PROFILE_EMBEDDINGS = dg.AssetKey("profile_embeddings")
SIGNATURE_EMBEDDINGS = dg.AssetKey("signature_embeddings")
PERTURBAGEN_EMBEDDINGS = dg.AssetKey("perturbagen_embeddings")
ZSCORE_SIGNATURES = dg.AssetKey("zscore_signatures")
READ_ACROSS_RESULTS = dg.AssetKey("read_across_results")
PERTURBAGEN_MAP = dg.AssetKey("perturbagen_map")
EMBEDDINGS_GROUP = "embeddings"
READ_ACROSS_GROUP = "read_across"
ALL_CELL_LINES = dg.AllPartitionMapping()


def _card_path(lake: LakeResource):
    path = lake.model_dir / "card.json"
    if not path.exists():
        raise dg.Failure(f"{lake.model_dir}: no trained model, materialize embedding_model first")
    return path


def _profile_files(lake: LakeResource):
    files = lake.profile_embedding_files()
    if not files:
        raise dg.Failure(f"no profile embeddings under {lake.embeddings_dir}: materialize "
                         "profile_embeddings first")
    return files


def _embedding_schema(*columns: str) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns]
                          + [dg.TableColumn(EMBEDDING_COLUMN, "float32[d], unit length")])


class ProfileEmbeddingsConfig(dg.Config):
    batch_size: int = Field(default=16_384, ge=64,
                            description="Profiles read and embedded per batch.")


@dg.asset(
    key=PROFILE_EMBEDDINGS,
    group_name=EMBEDDINGS_GROUP,
    partitions_def=cell_line_partitions,
    deps=[LANDMARK_PROFILES, EMBEDDING_MODEL],
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"tensorflow", "parquet"},
    description=(
        "Every lake profile of a cell line embedded by the current model (L2-normalized, d "
        "floats): one Parquet file per cell line with the profile metadata and a "
        "fixed-size float32[d] embedding column. Several cell lines in one run share one "
        "model load. Replaced atomically."
    ),
)
def profile_embeddings(context: dg.AssetExecutionContext, config: ProfileEmbeddingsConfig,
                       lake: LakeResource) -> dg.MaterializeResult:
    from l1000_assets.core.model import embed
    from l1000_assets.core.model_store import load_card, load_embedding

    card_path = _card_path(lake)
    version = model_version(card_path)
    gene_order = load_card(lake.model_dir)["gene_order"]
    model = load_embedding(lake.model_dir)
    rows = {}
    for cell in context.partition_keys:
        files = sorted(lake.landmark_dir(cell).glob("*.parquet"))
        if not files:
            raise dg.Failure(f"no landmark profiles for cell line {cell!r} under "
                             f"{lake.landmark_dir(cell)}: materialize landmark_profiles")
        for path in files:
            if read_profile_gene_ids(path) != gene_order:
                raise dg.Failure(f"{path}: model/gene-order mismatch: the lake's landmark "
                                 f"order differs from the model card's gene_order "
                                 f"({card_path}); train the model on this lake again")
        try:
            rows[cell] = write_profile_embeddings(
                files, lambda x: embed(model, x), lake.profile_embeddings_path(cell),
                version=version, batch_size=config.batch_size,
                progress=ProgressReporter(lambda m, c=cell: context.log.info(f"{c}: {m}"),
                                          interval=10.0))
        except L1000InputError as exc:
            raise dg.Failure(str(exc)) from exc
    table = pd.DataFrame({"cell_id": list(rows), "profiles": list(rows.values())})
    return dg.MaterializeResult(metadata={
        "dagster/row_count": int(table["profiles"].sum()),
        "model_version": version,
        "embedding_dim": int(model.output_shape[-1]),
        "profiles_per_cell_line": dg.MetadataValue.md(table.to_markdown(index=False)),
        "path": dg.MetadataValue.path(str(lake.profile_embeddings_path("*"))),
        "dagster/column_schema": _embedding_schema("inst_id", "pert_id", "cell_id"),
    })


@dg.asset(
    key=SIGNATURE_EMBEDDINGS,
    group_name=EMBEDDINGS_GROUP,
    deps=[dg.AssetDep(PROFILE_EMBEDDINGS, partition_mapping=ALL_CELL_LINES)],
    kinds={"parquet"},
    description=(
        "One row per signature (perturbagen x cell line x dose x time): the mean of its "
        "profile embeddings, re-normalized to unit length, with the replicate count. sig_id "
        "is cell:pert:dose unit:time unit."
    ),
)
def signature_embeddings(context: dg.AssetExecutionContext,
                         lake: LakeResource) -> dg.MaterializeResult:
    try:
        n = write_signature_embeddings(_profile_files(lake), lake.signature_embeddings_path,
                                       log=context.log.info)
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc
    meta, _ = read_embeddings(lake.signature_embeddings_path, ["n_replicates"])
    replicates = meta.column("n_replicates").to_numpy()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": n,
        "median_replicates": float(np.median(replicates)) if n else 0.0,
        "single_replicate_signatures": int((replicates == 1).sum()),
        "path": dg.MetadataValue.path(str(lake.signature_embeddings_path)),
        "dagster/column_schema": _embedding_schema("sig_id", "pert_id", "cell_id",
                                                   "n_replicates"),
    })


@dg.asset(
    key=PERTURBAGEN_EMBEDDINGS,
    group_name=EMBEDDINGS_GROUP,
    deps=[dg.AssetDep(PROFILE_EMBEDDINGS, partition_mapping=ALL_CELL_LINES)],
    kinds={"parquet"},
    description=(
        "One row per perturbagen over all cell lines (cell_id null) and one per perturbagen "
        "and cell line: the re-normalized mean of its profile embeddings, with profile, "
        "signature and cell line counts."
    ),
)
def perturbagen_embeddings(context: dg.AssetExecutionContext,
                           lake: LakeResource) -> dg.MaterializeResult:
    try:
        n = write_perturbagen_embeddings(_profile_files(lake), lake.perturbagen_embeddings_path,
                                         log=context.log.info)
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc
    meta, _ = read_embeddings(lake.perturbagen_embeddings_path, ["pert_type", "cell_id"])
    df = meta.to_pandas()
    overall = df[df["cell_id"].isna()]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": n,
        "perturbagens": len(overall),
        "perturbagens_by_type": dg.MetadataValue.md(
            overall["pert_type"].value_counts().rename_axis("pert_type")
            .reset_index(name="perturbagens").to_markdown(index=False)),
        "path": dg.MetadataValue.path(str(lake.perturbagen_embeddings_path)),
        "dagster/column_schema": _embedding_schema("pert_id", "pert_iname", "pert_type",
                                                   "cell_id"),
    })


@dg.asset_check(asset=PERTURBAGEN_EMBEDDINGS, blocking=True,
                description="Every perturbagen embedding is finite and of unit length, and "
                            "each perturbagen has exactly one all-cell-line row.")
def perturbagen_embeddings_unit_length(lake: LakeResource) -> dg.AssetCheckResult:
    meta, x = read_embeddings(lake.perturbagen_embeddings_path, ["pert_id", "cell_id"])
    df = meta.to_pandas()
    norms = np.linalg.norm(x, axis=1)
    overall = df.loc[df["cell_id"].isna(), "pert_id"]
    bad = int((~np.isfinite(x).all(axis=1) | (np.abs(norms - 1) > 1e-4)).sum())
    return dg.AssetCheckResult(passed=bad == 0 and overall.is_unique and
                               set(overall) == set(df["pert_id"]),
                               metadata={"not_unit_length": bad, "rows": len(df),
                                         "perturbagens": int(overall.nunique())})


class ZscoreSignaturesConfig(dg.Config):
    memory_limit_mb: int = Field(default=1024, ge=64, description=(
        "DuckDB memory for sorting a cell line's profiles by signature (spills to disk "
        "beyond it)."))


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
def zscore_signatures(context: dg.AssetExecutionContext, config: ZscoreSignaturesConfig,
                      lake: LakeResource) -> dg.MaterializeResult:
    counts = {}
    for cell in context.partition_keys:
        files = sorted(lake.landmark_dir(cell).glob("*.parquet"))
        if not files:
            raise dg.Failure(f"no landmark profiles for cell line {cell!r}: materialize "
                             "landmark_profiles")
        counts[cell] = write_zscore_signatures(
            files, lake.zscore_signatures_path(cell), memory_limit_mb=config.memory_limit_mb,
            progress=ProgressReporter(lambda m, c=cell: context.log.info(f"{c}: {m}"),
                                      interval=10.0))
    table = pd.DataFrame({"cell_id": list(counts), "signatures": list(counts.values())})
    return dg.MaterializeResult(metadata={
        "dagster/row_count": int(table["signatures"].sum()),
        "signatures_per_cell_line": dg.MetadataValue.md(table.to_markdown(index=False)),
        "path": dg.MetadataValue.path(str(lake.zscore_signatures_path("*"))),
    })


class ReadAcrossConfig(dg.Config):
    files: list[str] = Field(default_factory=list, description=(
        "Query files to (re)process, absolute or relative to the queries folder. Empty: "
        "every query file in the folder. Listed files that fail fail the run; with an empty "
        "list, bad files are reported and skipped."))
    top: int = Field(default=20, ge=1, le=10_000, description="Perturbagens kept per profile.")
    max_missing: int = Field(default=50, ge=0, le=977, description=(
        "Landmark genes a query file may lack (set to 0, no change); more is refused."))
    allow_unknown_genes: bool = Field(default=False, description=(
        "Skip gene identifiers the genes table does not know instead of refusing the file."))
    cell_line: str | None = Field(default=None, description=(
        "Rank against one cell line's perturbagen embeddings (default: over all cell "
        "lines)."))
    pert_type: str | None = Field(default=None, description=(
        "Only perturbagens of this type (trt_cp, trt_sh, trt_oe...)."))


def _stage_progress(context: dg.AssetExecutionContext, name: str):
    def reporter(stage: str) -> ProgressReporter:
        return ProgressReporter(lambda m: context.log.info(f"{name}: {stage} {m}"),
                                interval=10.0)
    return reporter


def _read_across(lake: LakeResource, config: ReadAcrossConfig):
    from l1000_assets.core.readacross import ReadAcross

    try:
        return ReadAcross(lake.model_dir, lake.metadata_files("genes"),
                          lake.metadata_files("perturbagens"), lake.perturbagen_embeddings_path,
                          cell=config.cell_line, pert_type=config.pert_type)
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc


@dg.asset(
    key=READ_ACROSS_RESULTS,
    group_name=READ_ACROSS_GROUP,
    deps=[PERTURBAGEN_EMBEDDINGS, EMBEDDING_MODEL,
          dg.AssetDep(RELEASE_METADATA, partition_mapping=dg.AllPartitionMapping())],
    kinds={"tensorflow", "parquet"},
    pool="read_across",
    description=(
        "The user's own profiles (GCT, GCTX, CSV or TSV of level-4 landmark z-scores, "
        "dropped in the queries folder) embedded by the current model and ranked against "
        "the perturbagen embeddings: query, rank, perturbagen, similarity, MOA, target. "
        "Also each query's embedding and gene coverage. The read_across_queries sensor "
        "runs it for every new or changed file."
    ),
)
def read_across_results(context: dg.AssetExecutionContext, config: ReadAcrossConfig,
                        lake: LakeResource) -> dg.MaterializeResult:
    from l1000_assets.core.readacross import (QueryOptions, queries_in, write_results)

    folder = lake.queries_dir
    explicit = bool(config.files)
    paths = [p if p.is_absolute() else folder / p
             for p in (Path(f).expanduser() for f in config.files)] \
        if explicit else queries_in(folder)
    context.log.info(f"{len(paths)} query file(s) from {folder if not explicit else 'config'}")
    engine = _read_across(lake, config)
    options = QueryOptions(max_missing=config.max_missing,
                           allow_unknown=config.allow_unknown_genes)
    results, failed, summary = [], {}, []
    for path in paths:
        t0 = time.perf_counter()
        try:
            result = engine.run(path, top=config.top, options=options,
                                progress=_stage_progress(context, path.name))
        except L1000InputError as exc:
            context.log.error(str(exc))
            failed[str(path)] = exc.problem
            continue
        q = result.query
        note = (f"{path}: {len(q.profile_ids)} profile(s), {q.n_landmarks_used}/978 landmark "
                f"genes" + (f", missing (set to 0): {', '.join(q.missing[:10])}"
                            f"{'...' if len(q.missing) > 10 else ''}" if q.missing else ""))
        context.log.info(note)
        for warning in q.warnings:
            context.log.warning(f"{path}: {warning}")
        results.append(result)
        top1 = result.hits[result.hits["rank"] == 1]
        summary.append({"file": path.name, "profiles": len(q.profile_ids),
                        "landmarks_used": q.n_landmarks_used,
                        "top_hit": ", ".join(top1["pert_iname"].astype(str).head(3)),
                        "seconds": round(time.perf_counter() - t0, 2)})
    n_rows, n_queries = write_results(
        lake.read_across_dir / "results.parquet", lake.read_across_dir / "queries.parquet",
        results, replaced=paths, version=engine.version,
        dim=int(engine.references.vectors.shape[1]))
    if explicit and failed:
        raise dg.Failure(
            f"{len(failed)} query file(s) refused: " + "; ".join(f"{p}: {m}"
                                                                for p, m in failed.items()),
            metadata={"failed": dg.MetadataValue.json(failed)})
    preview = pd.concat([r.hits.head(10) for r in results]) if results else pd.DataFrame()
    return dg.MaterializeResult(metadata={
        "dagster/row_count": n_rows,
        "query_profiles": n_queries,
        "files_processed": len(results),
        "files_refused": dg.MetadataValue.json(failed),
        "model_version": engine.version,
        "queries_dir": dg.MetadataValue.path(str(folder)),
        "files": dg.MetadataValue.md(pd.DataFrame(summary).to_markdown(index=False))
        if summary else "none",
        "preview": dg.MetadataValue.md(preview[["query_id", "rank", "pert_iname", "pert_type",
                                                "similarity", "moa"]].round(3)
                                       .to_markdown(index=False)) if len(preview) else "none",
        "path": dg.MetadataValue.path(str(lake.read_across_dir / "results.parquet")),
    })


class PerturbagenMapConfig(dg.Config):
    method: Literal["tsne", "pca"] = Field(default="tsne", description=(
        "t-SNE (scikit-learn; neighbourhoods, slower) or PCA (linear, fast)."))
    max_perturbagens: int = Field(default=2000, ge=10, description=(
        "Perturbagens drawn (seeded) for the map; query profiles are always added."))
    seed: int = Field(default=0)


@dg.asset(
    key=PERTURBAGEN_MAP,
    group_name=READ_ACROSS_GROUP,
    deps=[PERTURBAGEN_EMBEDDINGS, READ_ACROSS_RESULTS],
    kinds={"scikitlearn", "matplotlib"},
    description=(
        "A 2-D map (t-SNE or PCA) of the perturbagen embeddings over all cell lines, "
        "coloured by perturbagen type and by MOA, with the user's query profiles marked."
    ),
)
def perturbagen_map(context: dg.AssetExecutionContext, config: PerturbagenMapConfig,
                    lake: LakeResource) -> dg.MaterializeResult:
    from l1000_assets.core.readacross import read_annotations

    if not lake.perturbagen_embeddings_path.exists():
        raise dg.Failure("materialize perturbagen_embeddings first")
    meta, x = read_embeddings(lake.perturbagen_embeddings_path,
                              ["pert_id", "pert_iname", "pert_type", "cell_id"])
    perts = meta.to_pandas()
    keep = perts["cell_id"].isna().to_numpy()
    perts, x = perts[keep].reset_index(drop=True), x[keep]
    perts = perts.merge(read_annotations(lake.metadata_files("perturbagens")), on="pert_id",
                        how="left")
    rng = np.random.default_rng(config.seed)
    if len(perts) > config.max_perturbagens:
        pick = np.sort(rng.choice(len(perts), config.max_perturbagens, replace=False))
        perts, x = perts.iloc[pick].reset_index(drop=True), x[pick]
    queries, qx = _query_points(lake)
    png = lake.read_across_dir / "perturbagen_map.png"
    t0 = time.perf_counter()
    xy = _layout(np.vstack([x, qx]) if len(qx) else x, config.method, config.seed)
    _plot(perts, xy[:len(x)], queries, xy[len(x):], png, config.method)
    context.log.info(f"{config.method} map of {len(x)} perturbagens and {len(qx)} query "
                     f"profile(s) in {time.perf_counter() - t0:.1f} s")
    return dg.MaterializeResult(metadata={
        "map": png_markdown(png, "perturbagen map"),
        "method": config.method,
        "perturbagens": len(x),
        "query_profiles": len(qx),
        "path": dg.MetadataValue.path(str(png)),
    })


def _query_points(lake: LakeResource):
    import pyarrow.parquet as pq

    from l1000_assets.core.embeddings import vector_matrix

    path = lake.read_across_dir / "queries.parquet"
    if not path.exists():
        return pd.DataFrame({"query_id": []}), np.zeros((0, 0), np.float32)
    table = pq.read_table(path)
    if not table.num_rows:
        return pd.DataFrame({"query_id": []}), np.zeros((0, 0), np.float32)
    vectors = normalize_rows(vector_matrix(table.column(EMBEDDING_COLUMN)))
    return table.drop_columns([EMBEDDING_COLUMN]).to_pandas(), vectors


def _layout(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if len(x) < 3 or method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(x) if len(x) >= 2 else \
            np.zeros((len(x), 2))
    perplexity = float(min(30.0, (len(x) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, metric="cosine", init="pca",
                random_state=seed).fit_transform(x)


def _plot(perts: pd.DataFrame, xy: np.ndarray, queries: pd.DataFrame, qxy: np.ndarray,
          path, method: str, n_moas: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from l1000_assets.core.atomic import atomic_file

    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    moa = perts["moa"].fillna("unknown")
    top = moa[moa != "unknown"].value_counts().index[:n_moas]
    colour_by = {"perturbagen type": perts["pert_type"].fillna("unknown"),
                 f"MOA (top {n_moas})": moa.where(moa.isin(top), "other / unknown")}
    for ax, (title, labels) in zip(axes, colour_by.items()):
        cmap = plt.get_cmap("tab10" if labels.nunique() <= 10 else "tab20")
        groups = sorted(labels.unique(), key=lambda g: (g in ("other / unknown", "unknown"), g))
        for i, group in enumerate(groups):
            sel = (labels == group).to_numpy()
            grey = group in ("other / unknown", "unknown")
            ax.scatter(xy[sel, 0], xy[sel, 1], s=10 if grey else 20,
                       alpha=0.5 if grey else 0.9, color="lightgrey" if grey else cmap(i % cmap.N),
                       label=f"{group} ({sel.sum()})", linewidths=0)
        if len(qxy):
            ax.scatter(qxy[:, 0], qxy[:, 1], marker="*", s=160, color="black",
                       edgecolors="white", linewidths=0.6, label="query profiles", zorder=5)
            for (x0, y0), name in list(zip(qxy, queries["query_id"].astype(str)))[:20]:
                ax.annotate(name, (x0, y0), fontsize=7, xytext=(4, 4),
                            textcoords="offset points")
        ax.set_title(f"perturbagens by {title}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=1.2, loc="best", framealpha=0.8)
    fig.suptitle(f"perturbagen embeddings ({method.upper() if method == 'pca' else 't-SNE'}, "
                 f"{len(xy)} perturbagens)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
