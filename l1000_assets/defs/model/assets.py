"""The embedding model, one per perturbagen split (the ``split`` partitions): the split,
normalization statistics of its training profiles, and the trained model.

``all`` trains every perturbagen: it is the served model (read-across, the embeddings, the
catalog; ``L1000_SERVED_SPLIT`` names another). ``split_<seed>`` holds 20% of the
perturbagens out by a hash seeded with ``<seed>``: the evaluation pools their held-out ranks.
Adding a split is adding a ``split_<seed>`` partition in the UI."""

import shutil
from dataclasses import asdict
from typing import Literal

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from pydantic import Field

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.embeddings.vectors import model_version
from l1000_assets.core.model.split import (
    TEST,
    TRAIN,
    VALIDATION,
    all_training,
    assign_splits,
    split_sets,
)
from l1000_assets.core.model.store import CARD_FILE
from l1000_assets.defs.model.jobs import training_op_tags
from l1000_assets.lib.keys import (
    ALL_PARTITIONS,
    EMBEDDING_MODEL,
    LANDMARK_PROFILES,
    MODEL_GROUP,
    NORMALIZATION_STATS,
    PERTURBAGEN_SPLIT,
)
from l1000_assets.lib.lake import lake_fingerprint, landmark_files, read_split
from l1000_assets.lib.metadata import parquet_column_schema, png_markdown, table_preview
from l1000_assets.lib.partitions import ALL_SPLIT, split_partitions, split_seed
from l1000_assets.lib.resources import LakeResource


def split_role(split: str, served: str) -> str:
    """What a split's model is for, as the UI shows it (asset metadata)."""
    parts = []
    if split == served:
        parts.append("SERVED: read-across, embeddings and the catalog use this model")
    if split == ALL_SPLIT:
        parts.append(
            "every perturbagen trained; the direct-training variant of the drug-level "
            "evaluation (the paper's Table 2)"
        )
    else:
        parts.append(
            "20% of perturbagens held out; evaluation_metrics pools its held-out ranks "
            "with the other split_<seed> models"
        )
    return "; ".join(parts)


def _seed_of(split: str) -> int | None:
    try:
        return split_seed(split)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from exc


class PerturbagenSplitConfig(dg.Config):
    n_folds: int = Field(default=5, ge=2, description="Folds; one is held out (5 -> 20%).")
    test_fold: int = Field(default=0, ge=0, description="The held-out fold.")
    validation_fraction: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="Training perturbagens set aside to pick the best checkpoint "
        "(split_<seed> partitions; the all partition trains every perturbagen).",
    )


@dg.asset(
    key=PERTURBAGEN_SPLIT,
    group_name=MODEL_GROUP,
    partitions_def=split_partitions,
    deps=[dg.AssetDep(LANDMARK_PROFILES, partition_mapping=ALL_PARTITIONS)],
    kinds={"parquet"},
    description=(
        "Deterministic assignment of perturbagens (not profiles) to train, validation (part "
        "of the training split, for checkpoint selection only) and test (held out: never "
        "reaches training), one table per split partition: split_<seed> by a hash of pert_id "
        "seeded with <seed> (K folds, one held out); all puts every perturbagen in train."
    ),
)
def perturbagen_split(
    context: dg.AssetExecutionContext, config: PerturbagenSplitConfig, lake: LakeResource
) -> dg.MaterializeResult:
    key = context.partition_key
    seed = _seed_of(key)
    if config.test_fold >= config.n_folds:
        raise dg.Failure(f"test_fold {config.test_fold} must be below n_folds {config.n_folds}")
    profiles = pd.concat(
        [
            pq.read_table(f, columns=["pert_id", "pert_type"]).to_pandas()
            for f in landmark_files(lake)
        ]
    )
    counts = (
        profiles.groupby("pert_id")
        .agg(pert_type=("pert_type", "first"), n_profiles=("pert_type", "size"))
        .reset_index()
    )
    if seed is None:
        split = all_training(counts["pert_id"])
    else:
        split = assign_splits(
            counts["pert_id"],
            seed=seed,
            n_folds=config.n_folds,
            test_fold=config.test_fold,
            validation_fraction=config.validation_fraction,
        )
    split = split.merge(counts, on="pert_id")
    split["seed"] = pd.array([seed] * len(split), dtype="Int64")
    path = lake.split_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        split.to_parquet(tmp, index=False)
    summary = (
        split.groupby(["split", "pert_type"])
        .agg(perturbagens=("pert_id", "size"), profiles=("n_profiles", "sum"))
        .reset_index()
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "dagster/row_count": len(split),
            **{f"n_{s}": int((split["split"] == s).sum()) for s in (TRAIN, VALIDATION, TEST)},
            "seed": "none (every perturbagen trained)" if seed is None else seed,
            "role": split_role(key, lake.served_split),
            "summary": table_preview(summary, rows=len(summary)),
            "dagster/column_schema": parquet_column_schema(path),
        }
    )


@dg.asset(
    key=NORMALIZATION_STATS,
    group_name=MODEL_GROUP,
    partitions_def=split_partitions,
    deps=[PERTURBAGEN_SPLIT, dg.AssetDep(LANDMARK_PROFILES, partition_mapping=ALL_PARTITIONS)],
    kinds={"json", "numpy"},
    description="Per-gene mean and SD of the 978 landmarks over the split's training "
    "profiles only, streamed from the lake; stored with a SHA-256 the model records.",
)
def normalization_stats(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> dg.MaterializeResult:
    from l1000_assets.core.model.normalization import normalization_stats as compute

    key = context.partition_key
    split = read_split(lake, key)
    stats = compute(landmark_files(lake), set(split.loc[split["split"] == TRAIN, "pert_id"]))
    path = lake.normalization_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        stats.save(tmp)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "n_training_profiles": stats.n_profiles,
            "sha256": stats.digest,
            "mean_range": f"{stats.mean.min():.3f} .. {stats.mean.max():.3f}",
            "sd_range": f"{stats.sd.min():.3f} .. {stats.sd.max():.3f}",
        },
        data_version=dg.DataVersion(stats.digest[:16]),
    )


class EmbeddingModelConfig(dg.Config):
    """Defaults are the demo configuration (minutes on 2 CPU cores). The paper's: depth 64,
    growth 16, steps 8000, batch_size 8192 (on a GPU)."""

    depth: int = Field(
        default=16, ge=1, description="Dense layers in the DenseNet stack (paper 64)."
    )
    growth: int = Field(
        default=32, ge=1, description="Units per layer, the growth rate (paper 16)."
    )
    embedding_dim: int = Field(default=32, ge=2, description="Embedding size (paper 32).")
    noise_sd: float = Field(default=0.3, ge=0, description="Gaussian input noise SD in training.")
    head: Literal["cosface", "arcface"] = Field(
        default="cosface", description="Additive cosine margin (paper) or angular (ArcFace)."
    )
    scale: Literal["trainable", "adacos"] = Field(
        default="trainable", description="Trainable logit scale (paper) or AdaCos fixed."
    )
    max_margin: float = Field(default=0.25, ge=0, description="Final margin (paper 0.25).")
    margin_ramp: float = Field(default=0.0002, ge=0, description="Margin added per step.")
    steps: int = Field(default=2000, ge=1, description="Optimizer steps (paper 8,000).")
    batch_size: int = Field(
        default=0, ge=0, description="0: 8,192 on a GPU, 512 on CPU (paper 8,192)."
    )
    learning_rate: float = Field(default=1e-3, gt=0, description="Adam peak learning rate.")
    checkpoint_every: int = Field(
        default=250, ge=1, description="Steps between checkpoints and validation."
    )
    mixed_precision: bool = Field(default=False, description="mixed_float16 on a GPU.")
    input_pipeline: Literal["auto", "host", "device"] = Field(
        default="auto",
        description="Training profiles in host memory (host) or copied once onto the device, "
        "batches gathered there (device); auto: device on one GPU when they fit "
        "device_memory_budget_mb.",
    )
    device_memory_budget_mb: int = Field(
        default=16_384, ge=64, description="Training profiles resident on one GPU up to this."
    )
    memory_budget_mb: int = Field(
        default=4096, ge=64, description="Load the training set if it fits, else stream."
    )
    fresh_start: bool = Field(default=False, description="Ignore an existing checkpoint.")
    seed: int = Field(default=0, description="Initialization and shuffling seed.")


def _configs(config: EmbeddingModelConfig):
    from l1000_assets.core.model.network import ModelConfig
    from l1000_assets.core.model.training import TrainConfig

    model_config = ModelConfig(
        depth=config.depth,
        growth=config.growth,
        embedding_dim=config.embedding_dim,
        noise_sd=config.noise_sd,
        head=config.head,
        scale=config.scale,
        max_margin=config.max_margin,
        margin_ramp=config.margin_ramp,
    )
    train_config = TrainConfig(
        steps=config.steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        checkpoint_every=config.checkpoint_every,
        mixed_precision=config.mixed_precision,
        memory_budget_mb=config.memory_budget_mb,
        input_pipeline=config.input_pipeline,
        device_memory_budget_mb=config.device_memory_budget_mb,
        seed=config.seed,
    )
    return model_config, train_config


@dg.asset(
    key=EMBEDDING_MODEL,
    group_name=MODEL_GROUP,
    partitions_def=split_partitions,
    deps=[
        PERTURBAGEN_SPLIT,
        NORMALIZATION_STATS,
        dg.AssetDep(LANDMARK_PROFILES, partition_mapping=ALL_PARTITIONS),
    ],
    kinds={"tensorflow", "keras"},
    pool="training",
    op_tags=training_op_tags(),
    description=(
        "The deep metric embedding (Donner et al. 2018), one model per split partition: "
        "DenseNet-style SELU stack on the 978 standardized landmarks, L2-normalized output, "
        "cosine-margin softmax over the split's training perturbagens. Partition 'all' is "
        "trained on every perturbagen and is the SERVED model (read-across, embeddings, "
        "catalog); partitions 'split_<seed>' hold 20% of the perturbagens out and are the "
        "models evaluation_metrics pools (best checkpoint on validation perturbagens). GPU "
        "when visible (paper schedule: depth 64, growth 16, batch 8,192, 8,000 steps, mixed "
        "precision, training set resident on the device), MultiWorkerMirroredStrategy under "
        "TF_CONFIG. Checkpoints every N steps and resumes after a crash. Saves "
        "embedding.keras, training.keras and a model card (split, training perturbagens)."
    ),
)
def embedding_model(
    context: dg.AssetExecutionContext, config: EmbeddingModelConfig, lake: LakeResource
) -> dg.MaterializeResult:
    from l1000_assets.core.model.devices import cluster
    from l1000_assets.core.model.normalization import (
        NormalizationStats,
        perturbagen_set_digest,
    )
    from l1000_assets.core.model.split_models import train_on_split
    from l1000_assets.core.model.store import save_model
    from l1000_assets.core.model.worker import SPEC_FILE, WorkerSpec, write_spec

    key = context.partition_key
    files = landmark_files(lake)
    split = read_split(lake, key)
    perts = split_sets(split)
    stats_path = lake.normalization_path(key)
    if not stats_path.exists():
        raise dg.Failure(f"{stats_path} not found: materialize normalization_stats[{key}]")
    stats = NormalizationStats.load(stats_path)
    if stats.train_digest != perturbagen_set_digest(perts[TRAIN]):
        # Statistics from another split would carry held-out profiles into the model.
        raise dg.Failure(
            f"{stats_path} was computed on another set of training perturbagens than "
            f"perturbagen_split[{key}]: materialize normalization_stats[{key}] again"
        )
    model_config, train_config = _configs(config)
    checkpoints = lake.checkpoint_dir(key)
    if config.fresh_start and checkpoints.exists():
        shutil.rmtree(checkpoints)
    data_version = lake_fingerprint(files)
    where = cluster()
    if not where.is_chief:
        raise dg.Failure(
            f"TF_CONFIG makes this process worker {where.index}: embedding_model runs on the "
            "chief (worker 0); run the other workers with `python -m "
            f"l1000_assets.core.model.worker {checkpoints / SPEC_FILE}`"
        )
    workers = where.n_workers
    if workers > 1:
        spec = write_spec(
            checkpoints / SPEC_FILE,
            WorkerSpec(
                files=[str(f) for f in files],
                split_path=str(lake.split_path(key)),
                normalization_path=str(stats_path),
                split=key,
                split_seed=_seed_of(key),
                model_config=model_config.to_dict(),
                train_config=asdict(train_config),
                checkpoint_dir=str(checkpoints),
                model_dir=str(lake.split_model_dir(key)),
                data_version=data_version,
                sample_seed=config.seed,
            ),
        )
        context.log.info(
            f"TF_CONFIG names {workers} workers: this run is the chief; start the others "
            f"with `python -m l1000_assets.core.model.worker {spec}`"
        )
    trained = train_on_split(
        files,
        perts,
        stats,
        model_config,
        train_config,
        checkpoints,
        split=key,
        split_seed=_seed_of(key),
        data_version=data_version,
        sample_seed=config.seed,
        log=context.log.info,
    )
    result, card = trained.result, trained.card
    model_dir = lake.split_model_dir(key)
    from l1000_assets.core.readacross.platforms.landmark_stats import (
        STATS_FILE,
        fit_landmark_stats,
    )

    landmark_stats = fit_landmark_stats(files, perts[TRAIN])
    save_model(
        model_dir,
        result.embedding,
        card,
        result.history,
        training_model=result.training_model,
        extra_files={STATS_FILE: landmark_stats.save},
    )
    heldout = {}
    if card["heldout"]:
        emb, base = (card["heldout"][m] for m in ("embedding", "zscore_cosine"))
        context.log.info(
            f"held-out perturbagens: embedding AUC {emb['auc']:.3f} (top-0.01 "
            f"{emb['recall_top_0.01']:.3f}) vs z-score cosine AUC {base['auc']:.3f} "
            f"({base['recall_top_0.01']:.3f})"
        )
        heldout = {
            "heldout_auc_embedding": round(emb["auc"], 4),
            "heldout_auc_zscore_cosine": round(base["auc"], 4),
            "heldout_top_0.01_embedding": round(emb["recall_top_0.01"], 4),
            "heldout_top_0.01_zscore_cosine": round(base["recall_top_0.01"], 4),
            "best_validation_auc": round(result.best_validation_auc, 4),
        }
    plot = model_dir / "training.png"
    gpu = result.extra.get("gpu") or {}
    return dg.MaterializeResult(
        metadata={
            "model_dir": dg.MetadataValue.path(str(model_dir)),
            "role": split_role(key, lake.served_split),
            "split": key,
            "n_train_perturbagens": card["n_train_perturbagens"],
            "n_heldout_perturbagens": card["n_heldout_perturbagens"],
            "checkpoint": card["checkpoint"],
            "device": result.device,
            "input_pipeline": result.extra["input_pipeline"],
            "parameters": result.extra["parameters"],
            "n_classes": result.n_classes,
            "steps": result.history[-1]["step"] if result.history else 0,
            "resumed_from_step": result.resumed_from_step,
            "best_step": result.best_step,
            **heldout,
            **gpu,
            "training_seconds": round(result.seconds, 1),
            "history": table_preview(pd.DataFrame(result.history), rows=len(result.history)),
            "history_plot": png_markdown(plot, "training history") if plot.exists() else "none",
            "normalization_sha256": stats.digest,
        },
        data_version=dg.DataVersion(model_version(model_dir / CARD_FILE)),
    )


IN_SAMPLE_PROFILES = 4000
"""Profiles of the all model's check (in-sample: every perturbagen was trained)."""


@dg.asset_check(
    asset=EMBEDDING_MODEL,
    partitions_def=split_partitions,
    blocking=True,
    description="split_<seed>: on its held-out perturbagens the saved model ranks "
    "same-perturbagen profiles better than z-score cosine (AUC). all (nothing held out): the "
    "same on a seeded sample of its training profiles, in-sample (it catches a failed "
    "training; the held-out figures are the split models').",
)
def embedding_model_beats_zscore(
    context: dg.AssetCheckExecutionContext, lake: LakeResource
) -> dg.AssetCheckResult:
    from l1000_assets.core.model.card import heldout_comparison
    from l1000_assets.core.model.store import load_embedding
    from l1000_assets.core.model.training import load_split_profiles

    key = context.partition_key
    perts = split_sets(read_split(lake, key))
    in_sample = not perts[TEST]
    profiles = load_split_profiles(
        lake.landmark_files(),
        perts[TRAIN] if in_sample else perts[TEST],
        max_profiles=IN_SAMPLE_PROFILES if in_sample else None,
    )
    comparison = heldout_comparison(load_embedding(lake.split_model_dir(key)), profiles)
    emb, base = comparison["embedding"]["auc"], comparison["zscore_cosine"]["auc"]
    label = "in_sample" if in_sample else "heldout"
    return dg.AssetCheckResult(
        passed=bool(emb > base),
        metadata={
            "profiles": "training (in-sample)" if in_sample else "held-out perturbagens",
            f"{label}_auc_embedding": round(emb, 4),
            f"{label}_auc_zscore_cosine": round(base, 4),
        },
    )
