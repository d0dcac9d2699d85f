"""Gene-set queries as CMap users make them: the BING-space signature store, the tau
reference, the results of the gene-set files in the queries folder, and the statistics on
the hits of the profile read-across."""

import dataclasses
import time
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from pydantic import Field

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.connectivity.gene_sets import (
    DEFAULT_MAX_GENES,
    DEFAULT_MIN_GENES,
    GeneSetOptions,
    gene_set_files_in,
)
from l1000_assets.core.connectivity.reference import DEFAULT_QUERIES
from l1000_assets.core.connectivity.results import (
    ENRICHMENT_FILE,
    ENRICHMENT_SCHEMA,
    QUERIES_FILE,
    QUERY_SCHEMA,
    READ_ACROSS_ENRICHMENT_FILE,
    REFERENCE_DIR,
    RESULT_SCHEMA,
    RESULTS_FILE,
    STORE_DIR,
    as_table,
    merge_tables,
    result_tables,
)
from l1000_assets.core.connectivity.signatures import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_BUDGET_BYTES,
    ReleaseInput,
)
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.evaluation.connectivity import DEFAULT_K
from l1000_assets.core.progress import ProgressReporter
from l1000_assets.core.releases.local import find_matrix
from l1000_assets.core.releases.reconcile import STRICT
from l1000_assets.lib.keys import (
    ALL_PARTITIONS,
    CONNECTIVITY_GROUP,
    CONNECTIVITY_REFERENCE,
    CONNECTIVITY_RESULTS,
    CONNECTIVITY_SIGNATURES,
    EMBEDDING_MODEL,
    PERTURBAGEN_EMBEDDINGS,
    READ_ACROSS_ENRICHMENT,
    READ_ACROSS_RESULTS,
    RELEASE_METADATA,
    SIGNATURE_EMBEDDINGS,
)
from l1000_assets.lib.partitions import served_model_mapping
from l1000_assets.lib.releases import (
    ReleaseRegistry,
    release_file_names,
    release_root,
    release_source,
)
from l1000_assets.lib.resources import LakeResource


def _mb(n_bytes: int) -> float:
    return round(n_bytes / 2**20, 1)


def lake_genes(lake: LakeResource) -> tuple[pd.DataFrame, Path]:
    """The canonical genes of the lake's releases (the first release's row of a gene)."""
    paths = lake.metadata_files("genes")
    if not paths:
        raise dg.Failure("no genes table in the lake: materialize release_metadata first")
    genes = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return genes.drop_duplicates("gene_id").reset_index(drop=True), paths[0]


class ConnectivitySignaturesConfig(dg.Config):
    gene_space: Literal["bing", "all"] = Field(
        default="bing",
        description=(
            "bing: the 978 landmarks and the best inferred genes (pr_is_bing; 10,174 in the GEO "
            "releases), the space CMap scores gene sets in; all: every gene of the matrix "
            "(12,328), 20% more storage."
        ),
    )
    block_size: int = Field(
        default=DEFAULT_BLOCK_SIZE,
        ge=16,
        description="Matrix columns (profiles) read per block (about 40 KB each in BING space).",
    )
    memory_mb: int = Field(
        default=DEFAULT_BUDGET_BYTES >> 20,
        ge=1,
        description=(
            "Replicates of signatures not yet complete held in memory; beyond it they wait in "
            "a temporary spill file (the GEO files keep replicates close: nothing spills)."
        ),
    )
    on_bad_input: Literal["strict", "skip"] = Field(
        default=STRICT, description="As for landmark_profiles: fail, or drop and report."
    )
    allow_non_zscores: bool = Field(
        default=False,
        description=(
            "As for landmark_profiles: build from a matrix that plainly is not level-4 "
            "z-scores (refused otherwise)."
        ),
    )


@dg.asset(
    key=CONNECTIVITY_SIGNATURES,
    group_name=CONNECTIVITY_GROUP,
    deps=[dg.AssetDep(RELEASE_METADATA, partition_mapping=ALL_PARTITIONS)],
    kinds={"numpy", "parquet", "hdf5"},
    description=(
        "Level-5 MODZ signatures (per perturbagen, cell line, dose and time; weights from the "
        "replicates' landmark correlations, as CMap) over the BING genes, built from every "
        "release's level-4 matrix in one pass, in column blocks, and stored gene-major for "
        "fast rank look-ups: int16 ranks and float16 z-scores in memory-mapped .npy files, "
        "with a Parquet index of the signatures. What gene-set queries are scored against."
    ),
)
def connectivity_signatures(
    context: dg.AssetExecutionContext,
    config: ConnectivitySignaturesConfig,
    lake: LakeResource,
    releases: ReleaseRegistry,
) -> dg.MaterializeResult:
    from l1000_assets.core.connectivity.signatures import write_signature_store

    genes, genes_path = lake_genes(lake)
    inputs = []
    for name in lake.metadata_releases():
        source = release_source(name, releases, lake)
        try:
            matrix = find_matrix(release_root(source, lake), release_file_names(source))
        except L1000InputError as exc:
            raise dg.Failure(str(exc)) from exc
        inputs.append(ReleaseInput(name, matrix, lake.metadata_dir(name) / "instances.parquet"))
    if not inputs:
        raise dg.Failure("no release in the lake: materialize release_metadata first")
    try:
        report = write_signature_store(
            inputs,
            genes,
            lake.connectivity_dir / STORE_DIR,
            gene_space=config.gene_space,
            genes_path=genes_path,
            on_bad_input=config.on_bad_input,
            block_size=config.block_size,
            budget_bytes=config.memory_mb << 20,
            allow_non_zscores=config.allow_non_zscores,
            progress=ProgressReporter(context.log.info, interval=10.0),
        )
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc
    per_cell = pd.DataFrame(
        {
            "cell_id": list(report.signatures_per_cell),
            "signatures": report.signatures_per_cell.values(),
        }
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.n_signatures,
            "profiles": report.n_profiles,
            "genes": report.n_genes,
            "gene_space": report.gene_space,
            "store_version": report.version,
            "size_mb": _mb(report.bytes),
            "seconds": round(report.seconds, 1),
            "profiles_per_s": round(report.n_profiles / max(report.seconds, 1e-9)),
            "max_open_signatures": report.max_open_signatures,
            "spilled_profiles": report.spilled_profiles,
            "signatures_per_cell_line": dg.MetadataValue.md(per_cell.to_markdown(index=False)),
            "path": dg.MetadataValue.path(str(report.path)),
        }
    )


class ConnectivityReferenceConfig(dg.Config):
    n_queries: int = Field(
        default=DEFAULT_QUERIES,
        ge=10,
        description=(
            "Reference queries (this lake's Touchstone): a seeded sample of the signatures, "
            "each as its top and bottom k genes. tau's resolution is about one percentile; "
            "time grows with queries x signatures."
        ),
    )
    k: int = Field(
        default=DEFAULT_K, ge=5, le=500, description="Genes per set of a reference query."
    )
    seed: int = Field(default=0, description="Seed of the sample.")


@dg.asset(
    key=CONNECTIVITY_REFERENCE,
    group_name=CONNECTIVITY_GROUP,
    deps=[CONNECTIVITY_SIGNATURES],
    kinds={"numpy"},
    description=(
        "The tau reference: the NCS of a seeded sample of the signatures (as queries of their "
        "top and bottom genes) against every signature, kept as quantiles of |NCS| per "
        "signature, per perturbagen and cell line, and per perturbagen, so that tau is the "
        "signed percentile of a query's NCS among the reference's, as CMap defines it."
    ),
)
def connectivity_reference(
    context: dg.AssetExecutionContext, config: ConnectivityReferenceConfig, lake: LakeResource
) -> dg.MaterializeResult:
    from l1000_assets.core.connectivity.reference import write_reference
    from l1000_assets.core.connectivity.store import SignatureStore

    try:
        store = SignatureStore(lake.connectivity_dir / STORE_DIR)
        report = write_reference(
            store,
            lake.connectivity_dir / REFERENCE_DIR,
            n_queries=config.n_queries,
            k=config.k,
            seed=config.seed,
            progress=ProgressReporter(context.log.info, what="queries", interval=10.0),
        )
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc
    return dg.MaterializeResult(
        metadata={
            "reference_queries": report.n_queries,
            "signatures": report.n_signatures,
            "reference_version": report.version,
            "store_version": store.version,
            "size_mb": _mb(report.bytes),
            "seconds": round(report.seconds, 1),
            "path": dg.MetadataValue.path(str(report.path)),
        }
    )


class ConnectivityResultsConfig(dg.Config):
    files: list[str] = Field(
        default_factory=list,
        description=(
            "Gene-set files to (re)process (GRP, GMT, or CSV/TSV with gene and direction "
            "columns), absolute or relative to the queries folder. Empty: every gene-set file "
            "in the folder. Listed files that fail fail the run; with an empty list, bad files "
            "and queries are reported and skipped."
        ),
    )
    method: Literal["wtcs", "ncs", "tau", "mwu", "embedding"] = Field(
        default="tau",
        description=(
            "What ranks the hits: wtcs (CMap's weighted connectivity), ncs (normalized per "
            "cell line and type), tau (percentile against the reference), mwu (SigCom's "
            "two-sided rank test, z_up - z_down), embedding (the query projected into the "
            "model's input space, cosine with the signature embeddings)."
        ),
    )
    direction: Literal["both", "mimickers", "reversers"] = Field(
        default="both",
        description="Mimickers (most positive first), reversers (most negative first) or both.",
    )
    level: Literal["perturbagen", "cell", "signature"] = Field(
        default="perturbagen",
        description=(
            "One row per perturbagen (summarized over its cell lines), per perturbagen and "
            "cell line, or per signature."
        ),
    )
    top: int = Field(default=50, ge=1, le=10_000, description="Hits kept per query and direction.")
    cell_line: str | None = Field(default=None, description="Only this cell line's signatures.")
    pert_type: str | None = Field(default=None, description="Only this type (trt_cp, trt_sh...).")
    min_genes: int = Field(
        default=DEFAULT_MIN_GENES, ge=1, description="Valid genes a set needs (CMap: 10)."
    )
    max_genes: int = Field(
        default=DEFAULT_MAX_GENES, ge=1, description="Valid genes a set may have (CMap: 150)."
    )
    enrichment_top: int = Field(
        default=50, ge=1, description="Top perturbagens tested for MOA and target enrichment."
    )
    prerank: bool = Field(
        default=False,
        description="Also the ranked-list enrichment over every perturbagen (GSEA prerank).",
    )


def _engine(lake: LakeResource):
    from l1000_assets.core.connectivity.engine import ConnectivityEngine

    try:
        return ConnectivityEngine(
            lake.connectivity_dir / STORE_DIR,
            lake.metadata_files("genes"),
            lake.metadata_files("perturbagens"),
            reference_dir=lake.connectivity_dir / REFERENCE_DIR,
            model_dir=lake.model_dir,
            signature_embeddings=lake.signature_embeddings_path,
        )
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc


@dg.asset(
    key=CONNECTIVITY_RESULTS,
    group_name=CONNECTIVITY_GROUP,
    deps=[
        CONNECTIVITY_SIGNATURES,
        CONNECTIVITY_REFERENCE,
        SIGNATURE_EMBEDDINGS,
        dg.AssetDep(EMBEDDING_MODEL, partition_mapping=served_model_mapping()),
        dg.AssetDep(RELEASE_METADATA, partition_mapping=ALL_PARTITIONS),
    ],
    kinds={"numpy", "parquet"},
    pool="read_across",
    description=(
        "The gene-set files of the queries folder (GRP, GMT, CSV/TSV of gene and direction; "
        "up and down sets, or one of them) scored against the signature store: mimickers and "
        "reversers by WTCS, NCS, tau, SigCom's rank test or the embedding, per perturbagen, "
        "cell line or signature, with MOA and target enrichment among the hits and each "
        "query's genes sorted into valid, outside the space and invalid. The "
        "read_across_queries sensor runs it for every new or changed gene-set file."
    ),
)
def connectivity_results(
    context: dg.AssetExecutionContext, config: ConnectivityResultsConfig, lake: LakeResource
) -> dg.MaterializeResult:
    from l1000_assets.core.connectivity.engine import QueryOptions
    from l1000_assets.core.readacross.folder import query_paths

    folder = lake.queries_dir
    explicit = bool(config.files)
    paths = query_paths(folder, config.files, gene_set_files_in)
    context.log.info(f"{len(paths)} gene-set file(s) from {folder if not explicit else 'config'}")
    engine = _engine(lake)
    base = QueryOptions(
        method=config.method,
        level=config.level,
        top=config.top,
        cell=config.cell_line,
        pert_type=config.pert_type,
        genes=GeneSetOptions(config.min_genes, config.max_genes),
        enrichment_top=config.enrichment_top,
        prerank=config.prerank,
    )
    t0 = time.perf_counter()
    queries, failures = engine.read(paths, base)
    for failure in failures:
        context.log.error(failure.message)
    results = []
    try:
        directions = (
            ("mimickers", "reversers") if config.direction == "both" else (config.direction,)
        )
        for direction in directions:
            options = dataclasses.replace(base, direction=direction)
            results += engine.run(queries, options) if queries else []
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc
    reference = engine.reference.version if engine.reference is not None else None
    hits, query_rows, enrichment = result_tables(
        results, failures, store_version=engine.store.version, reference_version=reference
    )
    replaced = [
        *paths,
        *(f for q in queries for f in q.files),
        *(f for x in failures for f in x.files),
    ]
    out = lake.connectivity_dir
    rows = merge_tables(
        {
            out / RESULTS_FILE: (RESULT_SCHEMA, [hits]),
            out / QUERIES_FILE: (QUERY_SCHEMA, [query_rows]),
            out / ENRICHMENT_FILE: (ENRICHMENT_SCHEMA, [enrichment]),
        },
        replaced,
    )
    if explicit and failures:
        raise dg.Failure(
            f"{len(failures)} gene-set file(s) or queries refused: "
            + "; ".join(f.message for f in failures),
            metadata={"refused": dg.MetadataValue.json([f.message for f in failures])},
        )
    preview = hits.to_pandas()
    columns = ["query_name", "direction", "rank", "pert_iname", "pert_type", "moa", "score", "tau"]
    preview = preview[preview["rank"] <= 5][columns] if len(preview) else preview
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows[out / RESULTS_FILE],
            "queries": len(queries),
            "queries_refused": len(failures),
            "refused": dg.MetadataValue.json([f.message for f in failures]),
            "method": config.method,
            "level": config.level,
            "store_version": engine.store.version,
            "reference_version": reference or "none",
            "seconds": round(time.perf_counter() - t0, 2),
            "preview": dg.MetadataValue.md(preview.round(3).to_markdown(index=False))
            if len(preview)
            else "none",
            "path": dg.MetadataValue.path(str(out / RESULTS_FILE)),
        }
    )


class ReadAcrossEnrichmentConfig(dg.Config):
    top: int = Field(
        default=50, ge=1, description="Top perturbagens tested for MOA and target enrichment."
    )
    prerank: bool = Field(
        default=False,
        description="Also the ranked-list enrichment over every perturbagen (GSEA prerank).",
    )
    pert_type: str | None = Field(
        default=None,
        description="The background: only perturbagens of this type (as read-across ran).",
    )


@dg.asset(
    key=READ_ACROSS_ENRICHMENT,
    group_name=CONNECTIVITY_GROUP,
    deps=[READ_ACROSS_RESULTS, PERTURBAGEN_EMBEDDINGS],
    kinds={"parquet"},
    description=(
        "Statistics on the hits of the profile read-across: for each query profile, the MOAs "
        "and targets over-represented among its top perturbagens (hypergeometric, "
        "Benjamini-Hochberg FDR, and which hits carry each term), and on request GSEA's "
        "ranked-list test over every perturbagen, as connectivity_results does for gene sets."
    ),
)
def read_across_enrichment(
    context: dg.AssetExecutionContext, config: ReadAcrossEnrichmentConfig, lake: LakeResource
) -> dg.MaterializeResult:
    from l1000_assets.core.connectivity.enrichment import read_across_enrichment as compute

    results = lake.read_across_dir / "results.parquet"
    queries = lake.read_across_dir / "queries.parquet"
    if not results.exists() or not queries.exists():
        raise dg.Failure("no read-across results yet: materialize read_across_results first")
    try:
        table = compute(
            results,
            queries,
            lake.perturbagen_embeddings_path,
            lake.metadata_files("perturbagens"),
            top=config.top,
            with_prerank=config.prerank,
            pert_type=config.pert_type,
        )
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc
    path = lake.connectivity_dir / READ_ACROSS_ENRICHMENT_FILE
    with atomic_file(path) as tmp:  # recomputed whole from the current read-across results
        pq.write_table(as_table(table, ENRICHMENT_SCHEMA), tmp)
    significant = table[table["fdr"] < 0.05] if len(table) else table
    context.log.info(f"{len(significant)} term(s) at FDR < 0.05 over {len(table)} tested")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(table),
            "significant_terms": len(significant),
            "preview": dg.MetadataValue.md(
                significant.head(10)[["query_name", "term_kind", "term", "n_hits_term", "fdr"]]
                .round(4)
                .to_markdown(index=False)
            )
            if len(significant)
            else "none",
            "path": dg.MetadataValue.path(str(path)),
        }
    )
