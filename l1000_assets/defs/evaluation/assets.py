"""Evaluation: the paper's retrieval protocols, the deep embedding against the classic
baselines, as a tidy table in the lake and the DuckDB catalog."""

import json
import time
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from l1000_assets.core.atomic import atomic_dir
from l1000_assets.core.evaluation.protocols import METHODS, PROTOCOLS
from l1000_assets.core.model.split import TEST
from l1000_assets.lib.keys import (
    ALL_PARTITIONS,
    EMBEDDING_MODEL,
    EVALUATION_GROUP,
    EVALUATION_METRICS,
    EXTRA_SPLIT_MODELS,
    LANDMARK_PROFILES,
    PERTURBAGEN_SPLIT,
    RELEASE_METADATA,
)
from l1000_assets.lib.lake import landmark_files, read_split
from l1000_assets.lib.metadata import png_markdown
from l1000_assets.lib.resources import LakeResource

METRICS_FILE = "metrics.parquet"
TABLE1_FILE = "table1.md"
CURVES_FILE = "recall_curves.parquet"
PLOT_FILE = "recall_curves.png"


def evaluation_dir(lake: LakeResource) -> Path:
    """Where the evaluation tables live in the lake."""
    return lake.path / "lake" / "evaluation"


class EvaluationMetricsConfig(dg.Config):
    protocols: list[str] = Field(
        default=["same_perturbagen", "replicates", "moa", "target"],
        description="Protocols: same perturbagen, biological replicates, drug-level MOA and "
        "target (perturbagen = mean of its profiles).",
    )
    methods: list[str] = Field(
        default=["embedding", "zscore_cosine", "zscore_euclidean", "wtcs"],
        description="Methods compared on the same queries: embedding, zscore_cosine, "
        "zscore_euclidean, wtcs, and ncs (WTCS normalized per cell line and "
        "perturbagen type; twice the cost of wtcs).",
    )
    mode: Literal["exact", "sampled"] = Field(
        default="exact",
        description="Exact ranks among every held-out negative, or the "
        "paper's sampled mode (n_sampled negatives per query).",
    )
    n_sampled: int = Field(default=10_000, ge=1, description="Negatives per query (sampled).")
    max_profiles: int = Field(
        default=50_000, ge=10, description="Seeded subsample of held-out profiles beyond this."
    )
    max_wtcs_queries: int = Field(
        default=1000, ge=1, description="Seeded WTCS/NCS queries (against every candidate)."
    )
    wtcs_k: int = Field(default=150, ge=1, description="Top/bottom genes of a WTCS query.")
    bootstrap: int = Field(default=200, ge=0, description="Bootstrap resamples (one split).")
    per_cell_line: bool = Field(default=True, description="Also one group per cell line.")
    seed: int = Field(default=0, description="Seed of subsampling, sampling and bootstrap.")


@dg.asset(
    key=EVALUATION_METRICS,
    group_name=EVALUATION_GROUP,
    deps=[
        EMBEDDING_MODEL,
        EXTRA_SPLIT_MODELS,
        PERTURBAGEN_SPLIT,
        dg.AssetDep(LANDMARK_PROFILES, partition_mapping=ALL_PARTITIONS),
        dg.AssetDep(RELEASE_METADATA, partition_mapping=ALL_PARTITIONS),
    ],
    kinds={"parquet", "numpy"},
    description=(
        "The paper's retrieval protocols on held-out perturbagens (same perturbagen, "
        "biological replicates, drug-level MOA and target), for the deep embedding, z-score "
        "cosine, z-score Euclidean and CMap WTCS on the same queries; per group (all, small "
        "molecules, genetic, each cell line). With extra_split_models on disk, every split "
        "model of the current configuration too: intervals over splits instead of a "
        "bootstrap. A tidy table (protocol, group, method, metric, value, CI) in the lake and "
        "the catalog, recall curves, and a Table-1 summary beside the published figures."
    ),
)
def evaluation_metrics(
    context: dg.AssetExecutionContext, config: EvaluationMetricsConfig, lake: LakeResource
) -> dg.MaterializeResult:
    from l1000_assets.core.evaluation.protocols import (
        EvaluationConfig,
        load_heldout,
        run_protocols,
    )
    from l1000_assets.core.evaluation.report import (
        metrics_table,
        plot_recall_curves,
        recall_curves,
        table1_markdown,
    )
    from l1000_assets.core.model.network import embed
    from l1000_assets.core.model.split_models import (
        find_split_models,
        same_training,
        split_perturbagens,
    )
    from l1000_assets.core.model.store import load_card, load_embedding
    from l1000_assets.core.readacross.ranking import read_annotations

    for name, given, known in (
        ("protocols", config.protocols, PROTOCOLS),
        ("methods", config.methods, METHODS),
    ):
        unknown = sorted(set(given) - set(known))
        if unknown or not given:
            raise dg.Failure(
                f"{name}: unknown {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(known)}"
            )
    files = landmark_files(lake)
    if not (lake.model_dir / "embedding.keras").exists():
        raise dg.Failure(f"no model in {lake.model_dir}: materialize embedding_model first")
    split = read_split(lake)
    card = load_card(lake.model_dir)
    # MOA and target per perturbagen, the first known value over the releases.
    perturbagens = read_annotations(lake.metadata_files("perturbagens"))
    eval_config = EvaluationConfig(
        protocols=config.protocols,
        methods=config.methods,
        mode=config.mode,
        n_sampled=config.n_sampled,
        max_wtcs_queries=config.max_wtcs_queries,
        wtcs_k=config.wtcs_k,
        per_cell_line=config.per_cell_line,
        seed=config.seed,
    )
    base_seed = int(split["seed"].iloc[0])
    models = {base_seed: lake.model_dir}
    stale = []
    for seed, model_dir in find_split_models(lake.split_models_dir).items():
        if seed != base_seed and same_training(load_card(model_dir), card):
            models[seed] = model_dir
        else:
            stale.append(seed)
    if stale:
        context.log.warning(
            f"split models of seeds {', '.join(map(str, stale))} left out: trained on other "
            "data, with another configuration or on the current model's own split "
            "(materialize extra_split_models again)"
        )

    t0 = time.perf_counter()
    all_runs = []
    for k, (split_seed, model_dir) in enumerate(models.items()):
        context.log.info(f"split {k + 1}/{len(models)} (seed {split_seed})")
        model = load_embedding(model_dir)
        if split_seed == base_seed:
            heldout_perts = set(split.loc[split["split"] == TEST, "pert_id"])
        else:
            heldout_perts = set(split_perturbagens(files, split_seed)[TEST])
        heldout = load_heldout(
            files, heldout_perts, perturbagens, max_profiles=config.max_profiles, seed=config.seed
        )
        if len(heldout.meta) < 2:
            raise dg.Failure(f"split seed {split_seed}: fewer than 2 held-out profiles")
        context.log.info(
            f"{len(heldout.meta):,} held-out profiles of "
            f"{heldout.meta['pert_id'].nunique():,} perturbagens"
        )
        embeddings = embed(model, heldout.values) if "embedding" in config.methods else None
        all_runs.append(run_protocols(heldout, embeddings, eval_config, log=context.log.info))
    table = metrics_table(all_runs, n_boot=config.bootstrap, seed=config.seed)
    table.insert(0, "model_data_version", card.get("data_version", ""))
    table["mode"] = config.mode
    curves = recall_curves(all_runs[0])
    markdown = table1_markdown(table)

    out = evaluation_dir(lake)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as tmp:
        table.to_parquet(tmp / METRICS_FILE, index=False)
        curves.to_parquet(tmp / CURVES_FILE, index=False)
        (tmp / TABLE1_FILE).write_text(markdown)
        plot_recall_curves(all_runs[0], tmp / PLOT_FILE)
        (tmp / "config.json").write_text(json.dumps(config.model_dump(), indent=2))
    seconds = time.perf_counter() - t0
    context.log.info("\n" + markdown)

    def headline(method: str, metric: str) -> float:
        sel = table[
            (table["protocol"] == "same_perturbagen")
            & (table["group"] == "all")
            & (table["method"] == method)
            & (table["metric"] == metric)
        ]
        return round(float(sel["value"].iloc[0]), 4) if len(sel) else float("nan")

    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out / METRICS_FILE)),
            "dagster/row_count": len(table),
            "table1": dg.MetadataValue.md(markdown),
            "recall_curves": png_markdown(out / PLOT_FILE, "recall versus rank quantile"),
            "n_splits": len(models),
            "split_seeds": ", ".join(map(str, models)),
            "stale_split_models": ", ".join(map(str, stale)) or "none",
            "mode": config.mode,
            **{f"auc_{m}": headline(m, "auc") for m in config.methods},
            **{f"top_0.01_{m}": headline(m, "recall_top_0.01") for m in config.methods},
            "seconds": round(seconds, 1),
        }
    )


@dg.asset_check(
    asset=EVALUATION_METRICS,
    blocking=True,
    description="On held-out perturbagens (same-perturbagen positives, all "
    "queries) the embedding beats z-score cosine in AUC and in "
    "top-0.01 recall.",
)
def embedding_beats_zscore_cosine(lake: LakeResource) -> dg.AssetCheckResult:
    table = pd.read_parquet(evaluation_dir(lake) / METRICS_FILE)
    sel = table[(table["protocol"] == "same_perturbagen") & (table["group"] == "all")]
    value = sel.set_index(["method", "metric"])["value"]
    needed = [
        ("embedding", "auc"),
        ("zscore_cosine", "auc"),
        ("embedding", "recall_top_0.01"),
        ("zscore_cosine", "recall_top_0.01"),
    ]
    missing = [f"{m}/{k}" for m, k in needed if (m, k) not in value.index]
    if missing:
        return dg.AssetCheckResult(passed=False, metadata={"missing": ", ".join(missing)})
    auc = (value[("embedding", "auc")], value[("zscore_cosine", "auc")])
    top = (value[("embedding", "recall_top_0.01")], value[("zscore_cosine", "recall_top_0.01")])
    return dg.AssetCheckResult(
        passed=bool(auc[0] > auc[1] and top[0] > top[1]),
        metadata={
            "auc_embedding": float(auc[0]),
            "auc_zscore_cosine": float(auc[1]),
            "top_0.01_embedding": float(top[0]),
            "top_0.01_zscore_cosine": float(top[1]),
        },
    )
