"""The embedding model: perturbagen split, normalization statistics, training, and the models
of further splits."""

from typing import Literal

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from pydantic import Field

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.embeddings.vectors import model_version
from l1000_assets.core.model.split import TEST, TRAIN, VALIDATION, assign_splits
from l1000_assets.core.model.split_models import (
    find_split_models,
    split_model_dir,
)
from l1000_assets.core.model.store import CARD_FILE
from l1000_assets.lib.keys import (
    ALL_PARTITIONS,
    EMBEDDING_MODEL,
    EXTRA_SPLIT_MODELS,
    LANDMARK_PROFILES,
    MODEL_GROUP,
    NORMALIZATION_STATS,
    PERTURBAGEN_SPLIT,
)
from l1000_assets.lib.lake import card_path, lake_fingerprint, landmark_files, read_split
from l1000_assets.lib.metadata import png_markdown
from l1000_assets.lib.resources import LakeResource


class PerturbagenSplitConfig(dg.Config):
    seed: int = Field(default=0, description="Split seed; other seeds give independent splits.")
    n_folds: int = Field(default=5, ge=2, description="Folds; one is held out (5 -> 20%).")
    test_fold: int = Field(default=0, ge=0, description="The held-out fold.")
    validation_fraction: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="Training perturbagens set aside to pick the best checkpoint.",
    )


@dg.asset(
    key=PERTURBAGEN_SPLIT,
    group_name=MODEL_GROUP,
    deps=[dg.AssetDep(LANDMARK_PROFILES, partition_mapping=ALL_PARTITIONS)],
    kinds={"parquet"},
    description=(
        "Deterministic assignment of perturbagens (not profiles) to train, validation (part "
        "of the training split, for checkpoint selection only) and test (held out: never "
        "reaches training), by a seeded hash of pert_id; K folds."
    ),
)
def perturbagen_split(config: PerturbagenSplitConfig, lake: LakeResource) -> dg.MaterializeResult:
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
    split = assign_splits(
        counts["pert_id"],
        seed=config.seed,
        n_folds=config.n_folds,
        test_fold=config.test_fold,
        validation_fraction=config.validation_fraction,
    )
    split = split.merge(counts, on="pert_id")
    split["seed"] = config.seed
    with atomic_file(lake.split_path) as tmp:
        split.to_parquet(tmp, index=False)
    summary = (
        split.groupby(["split", "pert_type"])
        .agg(perturbagens=("pert_id", "size"), profiles=("n_profiles", "sum"))
        .reset_index()
    )
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(lake.split_path)),
            "dagster/row_count": len(split),
            **{f"n_{s}": int((split["split"] == s).sum()) for s in (TRAIN, VALIDATION, TEST)},
            "seed": config.seed,
            "summary": dg.MetadataValue.md(summary.to_markdown(index=False)),
        }
    )


@dg.asset(
    key=NORMALIZATION_STATS,
    group_name=MODEL_GROUP,
    deps=[PERTURBAGEN_SPLIT, dg.AssetDep(LANDMARK_PROFILES, partition_mapping=ALL_PARTITIONS)],
    kinds={"json", "numpy"},
    description="Per-gene mean and SD of the 978 landmarks over the training profiles only, "
    "streamed from the lake; stored with a SHA-256 the model records.",
)
def normalization_stats(lake: LakeResource) -> dg.MaterializeResult:
    from l1000_assets.core.model.normalization import normalization_stats as compute

    split = read_split(lake)
    stats = compute(landmark_files(lake), set(split.loc[split["split"] == TRAIN, "pert_id"]))
    lake.normalization_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(lake.normalization_path) as tmp:
        stats.save(tmp)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(lake.normalization_path)),
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
    memory_budget_mb: int = Field(
        default=4096, ge=64, description="Load the training set if it fits, else stream."
    )
    fresh_start: bool = Field(default=False, description="Ignore an existing checkpoint.")
    seed: int = Field(default=0, description="Initialization and shuffling seed.")


@dg.asset(
    key=EMBEDDING_MODEL,
    group_name=MODEL_GROUP,
    deps=[
        PERTURBAGEN_SPLIT,
        NORMALIZATION_STATS,
        dg.AssetDep(LANDMARK_PROFILES, partition_mapping=ALL_PARTITIONS),
    ],
    kinds={"tensorflow", "keras"},
    pool="training",
    description=(
        "The deep metric embedding (Donner et al. 2018): DenseNet-style SELU stack on the 978 "
        "standardized landmarks, L2-normalized output, cosine-margin softmax over training "
        "perturbagens. Uses a GPU when visible (MirroredStrategy for several). Checkpoints "
        "every N steps and resumes after a crash; keeps the best checkpoint on validation "
        "perturbagens. Saves embedding.keras, training.keras and a model card."
    ),
)
def embedding_model(
    context: dg.AssetExecutionContext, config: EmbeddingModelConfig, lake: LakeResource
) -> dg.MaterializeResult:
    import shutil

    from l1000_assets.core.model.network import ModelConfig
    from l1000_assets.core.model.normalization import (
        NormalizationStats,
        perturbagen_set_digest,
    )
    from l1000_assets.core.model.split_models import train_on_split
    from l1000_assets.core.model.store import save_model
    from l1000_assets.core.model.training import TrainConfig

    files = landmark_files(lake)
    split = read_split(lake)
    perts = {s: set(split.loc[split["split"] == s, "pert_id"]) for s in (TRAIN, VALIDATION, TEST)}
    if not lake.normalization_path.exists():
        raise dg.Failure(f"{lake.normalization_path} not found: materialize normalization_stats")
    stats = NormalizationStats.load(lake.normalization_path)
    if stats.train_digest != perturbagen_set_digest(perts[TRAIN]):
        # Statistics from another split would carry held-out profiles into the model.
        raise dg.Failure(
            f"{lake.normalization_path} was computed on another set of training "
            "perturbagens than the current perturbagen_split: materialize "
            "normalization_stats again"
        )
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
        seed=config.seed,
    )
    if config.fresh_start and lake.checkpoint_dir.exists():
        shutil.rmtree(lake.checkpoint_dir)
    trained = train_on_split(
        files,
        perts,
        stats,
        model_config,
        train_config,
        lake.checkpoint_dir,
        split_seed=int(split["seed"].iloc[0]),
        data_version=lake_fingerprint(files),
        sample_seed=config.seed,
        log=context.log.info,
    )
    result = trained.result
    save_model(
        lake.model_dir,
        result.embedding,
        trained.card,
        result.history,
        training_model=result.training_model,
    )
    emb, base = (trained.card["heldout"][m] for m in ("embedding", "zscore_cosine"))
    context.log.info(
        f"held-out perturbagens: embedding AUC {emb['auc']:.3f} (top-0.01 "
        f"{emb['recall_top_0.01']:.3f}) vs z-score cosine AUC {base['auc']:.3f} "
        f"({base['recall_top_0.01']:.3f})"
    )
    plot = lake.model_dir / "training.png"
    return dg.MaterializeResult(
        metadata={
            "model_dir": dg.MetadataValue.path(str(lake.model_dir)),
            "device": result.device,
            "parameters": result.extra["parameters"],
            "n_classes": result.n_classes,
            "steps": result.history[-1]["step"] if result.history else 0,
            "resumed_from_step": result.resumed_from_step,
            "best_step": result.best_step,
            "best_validation_auc": round(result.best_validation_auc, 4),
            "heldout_auc_embedding": round(emb["auc"], 4),
            "heldout_auc_zscore_cosine": round(base["auc"], 4),
            "heldout_top_0.01_embedding": round(emb["recall_top_0.01"], 4),
            "heldout_top_0.01_zscore_cosine": round(base["recall_top_0.01"], 4),
            "training_seconds": round(result.seconds, 1),
            "history": dg.MetadataValue.md(
                pd.DataFrame(result.history).round(4).to_markdown(index=False)
            ),
            "history_plot": png_markdown(plot, "training history") if plot.exists() else "none",
            "normalization_sha256": stats.digest,
        },
        data_version=dg.DataVersion(model_version(lake.model_dir / CARD_FILE)),
    )


@dg.asset_check(
    asset=EMBEDDING_MODEL,
    blocking=True,
    description="On held-out perturbagens the saved model ranks same-perturbagen "
    "profiles better than z-score cosine (AUC).",
)
def embedding_model_beats_zscore(lake: LakeResource) -> dg.AssetCheckResult:
    from l1000_assets.core.model.card import heldout_comparison
    from l1000_assets.core.model.store import load_embedding
    from l1000_assets.core.model.training import load_split_profiles

    split = read_split(lake)
    test = load_split_profiles(
        lake.landmark_files(), set(split.loc[split["split"] == TEST, "pert_id"])
    )
    comparison = heldout_comparison(load_embedding(lake.model_dir), test)
    emb, base = comparison["embedding"]["auc"], comparison["zscore_cosine"]["auc"]
    return dg.AssetCheckResult(
        passed=bool(emb > base),
        metadata={
            "heldout_auc_embedding": round(emb, 4),
            "heldout_auc_zscore_cosine": round(base, 4),
        },
    )


class ExtraSplitModelsConfig(dg.Config):
    n_splits: int = Field(
        default=0,
        ge=0,
        description="Further perturbagen splits, on the seeds after perturbagen_split's, one "
        "model each trained like embedding_model (its card's configuration); "
        "evaluation_metrics then gives intervals over the splits. Each costs one training "
        "run; 0 removes the split models.",
    )


@dg.asset(
    key=EXTRA_SPLIT_MODELS,
    group_name=MODEL_GROUP,
    deps=[
        EMBEDDING_MODEL,
        PERTURBAGEN_SPLIT,
        dg.AssetDep(LANDMARK_PROFILES, partition_mapping=ALL_PARTITIONS),
    ],
    kinds={"tensorflow", "keras"},
    pool="training",
    description=(
        "Models of further perturbagen splits, for confidence intervals over splits: for "
        "each of n_splits seeds after perturbagen_split's, the lake's perturbagens split "
        "with that seed, normalization statistics of its training perturbagens and a model "
        "trained like embedding_model, saved in its store format under "
        "models/splits/seed=<s>/ (each swapped in whole). Split models of other seeds are "
        "removed."
    ),
)
def extra_split_models(
    context: dg.AssetExecutionContext, config: ExtraSplitModelsConfig, lake: LakeResource
) -> dg.MaterializeResult:
    import shutil

    from l1000_assets.core.model.network import ModelConfig
    from l1000_assets.core.model.split_models import train_split_model
    from l1000_assets.core.model.store import load_card, save_model
    from l1000_assets.core.model.training import TrainConfig

    files = landmark_files(lake)
    card = load_card(card_path(lake).parent)
    base_seed = int(read_split(lake)["seed"].iloc[0])
    seeds = [base_seed + 1 + i for i in range(config.n_splits)]
    model_config = ModelConfig(**card["model_config"])
    train_config = TrainConfig(
        **{k: v for k, v in card["train_config"].items() if k in TrainConfig.__dataclass_fields__}
    )
    splits_dir = lake.split_models_dir
    checkpoints = lake.checkpoint_dir.parent / "splits"
    data_version = lake_fingerprint(files)
    rows = []
    for k, seed in enumerate(seeds):
        context.log.info(f"split model {k + 1}/{len(seeds)} (seed {seed})")
        trained = train_split_model(
            files,
            seed,
            model_config,
            train_config,
            split_model_dir(checkpoints, seed),
            data_version=data_version,
            log=context.log.info,
        )
        result = trained.result
        save_model(
            split_model_dir(splits_dir, seed),
            result.embedding,
            trained.card,
            result.history,
            training_model=result.training_model,
        )
        heldout = trained.card["heldout"]
        rows.append(
            {
                "seed": seed,
                "heldout_auc_embedding": round(heldout["embedding"]["auc"], 4),
                "heldout_auc_zscore_cosine": round(heldout["zscore_cosine"]["auc"], 4),
                "best_step": result.best_step,
                "training_seconds": round(result.seconds, 1),
            }
        )
    removed = [s for s in find_split_models(splits_dir) if s not in seeds]
    for seed in removed:
        shutil.rmtree(split_model_dir(splits_dir, seed))
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(splits_dir)),
            "n_splits": len(seeds),
            "seeds": ", ".join(map(str, seeds)) or "none",
            "removed_seeds": ", ".join(map(str, removed)) or "none",
            "splits": dg.MetadataValue.md(
                pd.DataFrame(rows).to_markdown(index=False) if rows else "no split models"
            ),
        }
    )
