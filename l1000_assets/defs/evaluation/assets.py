"""Evaluation: the paper's retrieval protocols, the deep embedding against the classic
baselines. ``evaluation_ranks[split]`` ranks one split's held-out perturbagens (the ``all``
split: every compound, the drug-level direct-training variant); ``evaluation_metrics`` pools
the ranks of every split materialized into a tidy table in the lake and the catalog."""

import json
import time
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field

from l1000_assets.core.atomic import atomic_dir, atomic_file
from l1000_assets.core.embeddings.vectors import model_version
from l1000_assets.core.evaluation.protocols import (
    COMPOUND,
    DEFAULT_METHODS,
    DIRECT_PROTOCOLS,
    METHODS,
    PROTOCOLS,
)
from l1000_assets.core.model.split import TEST, TRAIN, split_sets
from l1000_assets.lib.keys import (
    ALL_PARTITIONS,
    COMPOUND_FINGERPRINTS,
    EMBEDDING_MODEL,
    EVALUATION_GROUP,
    EVALUATION_METRICS,
    EVALUATION_RANKS,
    LANDMARK_PROFILES,
    PERTURBAGEN_SPLIT,
    RELEASE_METADATA,
)
from l1000_assets.lib.lake import card_path, landmark_files, read_split, synthetic_releases
from l1000_assets.lib.metadata import png_markdown
from l1000_assets.lib.partitions import ALL_SPLIT, split_partitions
from l1000_assets.lib.resources import LakeResource

METRICS_FILE = "metrics.parquet"
PER_SPLIT_FILE = "metrics_per_split.parquet"
TABLE1_FILE = "table1.md"
CURVES_FILE = "recall_curves.parquet"
BREAKDOWN_FILE = "structure_breakdown.parquet"
PLOT_FILE = "recall_curves.png"
MODEL_VERSION_KEY = b"l1000.model_version"
DATA_VERSION_KEY = b"l1000.data_version"
MODE_KEY = b"l1000.mode"


def evaluation_dir(lake: LakeResource) -> Path:
    """Where the evaluation tables live in the lake."""
    return lake.path / "lake" / "evaluation"


class EvaluationRanksConfig(dg.Config):
    protocols: list[str] = Field(
        default=["same_perturbagen", "replicates", "moa", "target"],
        description="split_<seed> partitions: same perturbagen, biological replicates, "
        "drug-level MOA and target (compounds only; perturbagen = mean of its profiles). The "
        "all partition always runs moa_direct and target_direct (every compound).",
    )
    methods: list[str] = Field(
        default=list(DEFAULT_METHODS),
        description="Methods compared on the same queries: embedding, zscore_cosine, "
        "zscore_euclidean, wtcs, at drug level tanimoto (ECFP4 Tanimoto, from "
        "compound_fingerprints) and combo (mean of embedding cosine and Tanimoto), and ncs "
        "(WTCS normalized per cell line and perturbagen type; twice the cost of wtcs). WTCS "
        "and NCS score at most max_wtcs_queries queries.",
    )
    mode: Literal["exact", "sampled"] = Field(
        default="exact",
        description="Exact ranks among every held-out negative, or the paper's sampled mode "
        "(n_sampled negatives per query).",
    )
    n_sampled: int = Field(default=10_000, ge=1, description="Negatives per query (sampled).")
    max_profiles: int = Field(
        default=50_000, ge=10, description="Seeded subsample of held-out profiles beyond this."
    )
    max_wtcs_queries: int = Field(
        default=1000, ge=1, description="Seeded WTCS/NCS queries (against every candidate)."
    )
    wtcs_k: int = Field(default=150, ge=1, description="Top/bottom genes of a WTCS query.")
    seed: int = Field(default=0, description="Seed of subsampling, sampling and MCC pairs.")


def _fingerprints(lake: LakeResource, methods, log):
    """The compounds' fingerprints for the structure methods (None when not asked for, or
    when compound_fingerprints has not been materialized: then they are skipped)."""
    from l1000_assets.core.evaluation.protocols import METHOD_SPECS, Fingerprints
    from l1000_assets.core.structure.table import read_fingerprints

    if not any(METHOD_SPECS[m].drug_level_only for m in methods):
        return None
    path = lake.compound_fingerprints_path
    if not path.exists():
        log(f"{path} missing: tanimoto and combo skipped (materialize compound_fingerprints)")
        return None
    meta, packed = read_fingerprints(path)
    first = ~meta["pert_id"].astype(str).duplicated().to_numpy()
    return Fingerprints(meta["pert_id"].astype(str).to_numpy()[first], packed[first])


def _check_names(protocols, methods) -> None:
    for name, given, known in (
        ("protocols", protocols, PROTOCOLS),
        ("methods", methods, METHODS),
    ):
        unknown = sorted(set(given) - set(known))
        if unknown or not given:
            raise dg.Failure(
                f"{name}: unknown {', '.join(unknown) or '(none given)'}; "
                f"choose from {', '.join(known)}"
            )


@dg.asset(
    key=EVALUATION_RANKS,
    group_name=EVALUATION_GROUP,
    partitions_def=split_partitions,
    deps=[
        EMBEDDING_MODEL,
        PERTURBAGEN_SPLIT,
        COMPOUND_FINGERPRINTS,
        dg.AssetDep(LANDMARK_PROFILES, partition_mapping=ALL_PARTITIONS),
        dg.AssetDep(RELEASE_METADATA, partition_mapping=ALL_PARTITIONS),
    ],
    kinds={"parquet", "numpy"},
    description=(
        "The rank of every positive under the paper's protocols, for one split's model, with "
        "each positive's score and a seeded negative of its query (for the balanced MCC). "
        "split_<seed>: the held-out perturbagens (same perturbagen, biological replicates, "
        "drug-level MOA and target on compounds), for the embedding, z-score cosine, z-score "
        "Euclidean and CMap WTCS on the same queries, and at drug level ECFP4 Tanimoto and "
        "the paper's combo (compound_fingerprints), with each drug-level pair's Tanimoto. "
        "all: moa_direct and target_direct over every compound (the model trained on every "
        "perturbagen, the paper's direct training). evaluation_metrics pools these."
    ),
)
def evaluation_ranks(
    context: dg.AssetExecutionContext, config: EvaluationRanksConfig, lake: LakeResource
) -> dg.MaterializeResult:
    from l1000_assets.core.evaluation.protocols import (
        EvaluationConfig,
        load_heldout,
        load_perturbagen_means,
        run_direct,
        run_protocols,
    )
    from l1000_assets.core.evaluation.report import ranks_table
    from l1000_assets.core.model.network import embed
    from l1000_assets.core.model.store import load_embedding
    from l1000_assets.core.readacross.ranking import read_annotations

    key = context.partition_key
    _check_names(config.protocols, config.methods)
    files = landmark_files(lake)
    card = card_path(lake, key)
    version = model_version(card)
    model = load_embedding(card.parent)
    split = read_split(lake, key)
    perts = split_sets(split)
    # MOA and target per perturbagen, the first known value over the releases.
    perturbagens = read_annotations(lake.metadata_files("perturbagens"))
    fingerprints = _fingerprints(lake, config.methods, context.log.warning)
    t0 = time.perf_counter()
    if key == ALL_SPLIT or not perts[TEST]:
        eval_config = EvaluationConfig(
            protocols=DIRECT_PROTOCOLS,
            methods=config.methods,
            max_wtcs_queries=config.max_wtcs_queries,
            wtcs_k=config.wtcs_k,
            seed=config.seed,
        )
        info = split[["pert_id", "pert_type"]].merge(perturbagens, on="pert_id", how="left")
        compounds = set(split.loc[split["pert_type"] == COMPOUND, "pert_id"])
        means = load_perturbagen_means(
            files,
            perts[TRAIN] & compounds,
            (lambda x: embed(model, x)) if "embedding" in config.methods else None,
        )
        context.log.info(f"{len(means.ids):,} compounds, every one trained on")
        runs = run_direct(means, info, eval_config, log=context.log.info, fingerprints=fingerprints)
    else:
        eval_config = EvaluationConfig(
            protocols=config.protocols,
            methods=config.methods,
            mode=config.mode,
            n_sampled=config.n_sampled,
            max_wtcs_queries=config.max_wtcs_queries,
            wtcs_k=config.wtcs_k,
            seed=config.seed,
        )
        heldout = load_heldout(
            files, perts[TEST], perturbagens, max_profiles=config.max_profiles, seed=config.seed
        )
        if len(heldout.meta) < 2:
            raise dg.Failure(f"{key}: fewer than 2 held-out profiles")
        context.log.info(
            f"{len(heldout.meta):,} held-out profiles of "
            f"{heldout.meta['pert_id'].nunique():,} perturbagens"
        )
        embeddings = embed(model, heldout.values) if "embedding" in config.methods else None
        runs = run_protocols(
            heldout, embeddings, eval_config, log=context.log.info, fingerprints=fingerprints
        )
    ranks = ranks_table(runs, key)
    table = pa.Table.from_pandas(ranks, preserve_index=False)
    mode = "exact" if key == ALL_SPLIT or not perts[TEST] else config.mode
    table = table.replace_schema_metadata(
        {
            **(table.schema.metadata or {}),
            MODEL_VERSION_KEY: version.encode(),
            DATA_VERSION_KEY: str(json.loads(card.read_text()).get("data_version", "")).encode(),
            MODE_KEY: mode.encode(),
        }
    )
    path = lake.evaluation_ranks_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        pq.write_table(table, tmp)
    counts = (
        ranks.groupby(["protocol", "method"], observed=True)
        .agg(queries=("query", "nunique"), positives=("quantile", "size"))
        .reset_index()
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "dagster/row_count": len(ranks),
            "model_version": version,
            "protocols": ", ".join(dict.fromkeys(ranks["protocol"].astype(str))),
            "queries_and_positives": dg.MetadataValue.md(counts.to_markdown(index=False)),
            "seconds": round(time.perf_counter() - t0, 1),
        }
    )


class EvaluationMetricsConfig(dg.Config):
    bootstrap: int = Field(
        default=200,
        ge=0,
        description="Bootstrap resamples over perturbagens when a protocol has one split.",
    )
    per_cell_line: bool = Field(default=True, description="Also one group per cell line.")
    seed: int = Field(default=0, description="Seed of the bootstrap.")


def _current_ranks(lake: LakeResource, splits: list[str], log) -> tuple[list, list[str]]:
    """``(split, ranks, file metadata)`` of the given split partitions whose ranks are of the
    split's current model; the splits left out (ranks of an older model) are logged."""
    found, stale = [], []
    for split in splits:
        path = lake.evaluation_ranks_path(split)
        card = lake.split_model_dir(split) / "card.json"
        if not path.exists() or not card.exists():
            continue
        meta = pq.read_schema(path).metadata or {}
        if meta.get(MODEL_VERSION_KEY, b"").decode() != model_version(card):
            stale.append(split)
            continue
        found.append((split, pd.read_parquet(path), meta))
    if stale:
        log(
            f"ranks of {', '.join(stale)} left out: ranked with an older model "
            "(materialize evaluation_ranks for them again)"
        )
    return found, stale


@dg.asset(
    key=EVALUATION_METRICS,
    group_name=EVALUATION_GROUP,
    deps=[dg.AssetDep(EVALUATION_RANKS, partition_mapping=ALL_PARTITIONS)],
    kinds={"parquet", "numpy"},
    description=(
        "The paper's figures from the ranks of every split materialized, pooled as the paper "
        "pools its 41 splits: median rank quantile, recall at top-0.001/0.01/0.1 (q = x "
        "counting one half), AUC and MCC (each positive paired with a seeded negative of its "
        "query, thresholded at the pooled median), per protocol, method and group (all, "
        "small molecules, genetic, each cell line), with the queries and positives behind "
        "each figure. Held-out figures come from the split_<seed> models, drug-level "
        "*_direct figures from the all model. Intervals: the spread over splits (95% t), or "
        "with one split a bootstrap over perturbagens. A tidy table and a per-split table in "
        "the lake and the catalog, recall curves, and a Table-1 summary beside the published "
        "figures."
    ),
)
def evaluation_metrics(
    context: dg.AssetExecutionContext, config: EvaluationMetricsConfig, lake: LakeResource
) -> dg.MaterializeResult:
    from l1000_assets.core.evaluation.report import (
        breakdown_markdown,
        metrics_table,
        plot_recall_curves,
        recall_curves,
        structure_breakdown,
        table1_markdown,
    )

    t0 = time.perf_counter()
    splits = context.instance.get_dynamic_partitions(split_partitions.name)
    found, stale = _current_ranks(lake, splits, context.log.warning)
    if not found:
        raise dg.Failure(
            f"no current evaluation_ranks for any split partition ({', '.join(splits) or 'none'})"
            ": materialize embedding_model and evaluation_ranks for split_0 (and all) first"
        )
    ranks = pd.concat([r for _, r, _ in found], ignore_index=True)
    for column in ("split", "protocol", "method", "kind", "cell_id"):
        ranks[column] = ranks[column].astype("category")
    table, per_split = metrics_table(
        ranks, n_boot=config.bootstrap, seed=config.seed, per_cell_line=config.per_cell_line
    )
    versions = sorted({m.get(DATA_VERSION_KEY, b"").decode() for _, _, m in found})
    modes = {split: m.get(MODE_KEY, b"exact").decode() for split, _, m in found}
    table.insert(0, "model_data_version", ",".join(versions))
    heldout_modes = sorted({v for k, v in modes.items() if k != ALL_SPLIT}) or ["exact"]
    table["mode"] = ",".join(heldout_modes)
    table["synthetic"] = bool(synthetic_releases(lake))  # figures of a simulated release
    curves = recall_curves(ranks)
    breakdown = structure_breakdown(ranks)
    by_structure = breakdown_markdown(breakdown)
    synthetic = synthetic_releases(lake)
    markdown = table1_markdown(table) + (f"\n{by_structure}" if by_structure else "")
    if synthetic:
        markdown = (
            f"**Synthetic release** ({', '.join(synthetic)}): simulated profiles, not biology.\n\n"
            + markdown
        )

    out = evaluation_dir(lake)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out) as tmp:
        table.to_parquet(tmp / METRICS_FILE, index=False)
        per_split.to_parquet(tmp / PER_SPLIT_FILE, index=False)
        curves.to_parquet(tmp / CURVES_FILE, index=False)
        breakdown.to_parquet(tmp / BREAKDOWN_FILE, index=False)
        (tmp / TABLE1_FILE).write_text(markdown)
        plot_recall_curves(ranks, tmp / PLOT_FILE)
        (tmp / "config.json").write_text(json.dumps(config.model_dump(), indent=2))
    context.log.info("\n" + markdown)

    def headline(method: str, metric: str) -> float:
        sel = table[
            (table["protocol"] == "same_perturbagen")
            & (table["group"] == "all")
            & (table["method"] == method)
            & (table["metric"] == metric)
        ]
        return round(float(sel["value"].iloc[0]), 4) if len(sel) else float("nan")

    heldout_splits = sorted(
        s for s in ranks.loc[ranks["protocol"] == "same_perturbagen", "split"].astype(str).unique()
    )
    spread = per_split[
        (per_split["protocol"] == "same_perturbagen")
        & (per_split["group"] == "all")
        & (per_split["metric"].isin(["auc", "recall_top_0.01", "mcc"]))
    ].pivot_table(index=["method", "split"], columns="metric", values="value")
    methods = list(dict.fromkeys(table["method"]))
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(out / METRICS_FILE)),
            "dagster/row_count": len(table),
            "table1": dg.MetadataValue.md(markdown),
            "synthetic": bool(synthetic),
            "synthetic_releases": ", ".join(synthetic) or "none",
            "structure_breakdown": dg.MetadataValue.md(by_structure or "no fingerprints"),
            "per_split": dg.MetadataValue.md(spread.round(4).reset_index().to_markdown(index=False))
            if len(spread)
            else "no held-out splits",
            "recall_curves": png_markdown(out / PLOT_FILE, "recall versus rank quantile"),
            "n_splits": len(heldout_splits),
            "heldout_splits": ", ".join(heldout_splits) or "none",
            "direct_training": "all" if (ranks["split"] == ALL_SPLIT).any() else "none",
            "stale_splits": ", ".join(stale) or "none",
            **{f"auc_{m}": headline(m, "auc") for m in methods},
            **{f"top_0.01_{m}": headline(m, "recall_top_0.01") for m in methods},
            **{f"mcc_{m}": headline(m, "mcc") for m in methods},
            "seconds": round(time.perf_counter() - t0, 1),
        }
    )


@dg.asset_check(
    asset=EVALUATION_METRICS,
    blocking=True,
    description="On held-out perturbagens (same-perturbagen positives, all "
    "queries, ranks pooled over splits) the embedding beats z-score cosine in AUC and in "
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
