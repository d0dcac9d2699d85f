"""Training a model on one perturbagen split, and the models of further splits.

:func:`train_on_split` is the one way a model is trained and described here: a validation
sample of the split's validation perturbagens, the checkpointed loop of
:func:`~l1000_assets.core.model.training.train`, the held-out comparison on the split's test
perturbagens and the model card. ``embedding_model`` trains the current model with it on
``perturbagen_split``; :func:`train_split_model` trains a model like it on the split of
another seed (its own normalization statistics), for confidence intervals over splits.

Split models live in ``<data root>/models/splits/seed=<s>/``, each in the store format of
:mod:`l1000_assets.core.model.store` (:func:`split_model_dir`, :func:`find_split_models`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from l1000_assets.core.lake.read import read_profile_gene_ids
from l1000_assets.core.model.card import heldout_comparison, model_card
from l1000_assets.core.model.normalization import NormalizationStats, normalization_stats
from l1000_assets.core.model.split import TEST, TRAIN, VALIDATION, assign_splits
from l1000_assets.core.model.store import CARD_FILE, EMBEDDING_FILE
from l1000_assets.core.model.training import TrainConfig, TrainResult, load_split_profiles, train
from l1000_assets.core.progress import Log

VALIDATION_PROFILES = 4000
"""Validation profiles scored after every checkpoint chunk (a seeded sample)."""

SPLIT_DIR_PREFIX = "seed="


@dataclass
class TrainedModel:
    """A model trained on one split: the training result and its card."""

    result: TrainResult
    card: dict


def train_on_split(
    files: Sequence[Path],
    perts: Mapping[str, set[str]],
    stats: NormalizationStats,
    model_config,
    train_config: TrainConfig,
    checkpoint_dir: Path,
    *,
    split_seed: int,
    data_version: str,
    sample_seed: int,
    log: Log = print,
) -> TrainedModel:
    """Train on one split's training perturbagens and describe the model.

    Parameters
    ----------
    files
        The lake's landmark profile files.
    perts
        ``train``, ``validation`` and ``test`` -> perturbagen ids of the split.
    stats
        Normalization statistics of the training perturbagens' profiles.
    model_config, train_config
        Architecture and schedule.
    checkpoint_dir
        Checkpoints of the run (resumed when compatible).
    split_seed
        The split's seed (recorded in the card).
    data_version
        The lake's fingerprint (the checkpoint's and the card's data version).
    sample_seed
        Seed of the validation sample and of the held-out comparison's subsample.
    log
        Progress messages.
    """
    validation = load_split_profiles(
        files, perts[VALIDATION], max_profiles=VALIDATION_PROFILES, seed=sample_seed
    )
    result = train(
        files,
        sorted(perts[TRAIN]),
        validation,
        stats,
        model_config,
        train_config,
        checkpoint_dir,
        log=log,
        data_fingerprint=data_version,
    )
    test = load_split_profiles(files, perts[TEST])
    card = model_card(
        model_config,
        train_config,
        result,
        data_version=data_version,
        gene_order=read_profile_gene_ids(files[0]),
        normalization_sha256=stats.digest,
        split_seed=split_seed,
        heldout=heldout_comparison(result.embedding, test, seed=sample_seed),
    )
    return TrainedModel(result, card)


def split_perturbagens(files: Sequence[Path], seed: int) -> dict[str, set[str]]:
    """``train``, ``validation`` and ``test`` -> perturbagen ids of the lake's perturbagens
    under :func:`~l1000_assets.core.model.split.assign_splits` with ``seed``."""
    ids = pd.concat([pq.read_table(f, columns=["pert_id"]).to_pandas() for f in files])
    split = assign_splits(ids["pert_id"], seed=seed)
    return {s: set(split.loc[split["split"] == s, "pert_id"]) for s in (TRAIN, VALIDATION, TEST)}


def train_split_model(
    files: Sequence[Path],
    seed: int,
    model_config,
    train_config: TrainConfig,
    checkpoint_dir: Path,
    *,
    data_version: str,
    log: Log = print,
) -> TrainedModel:
    """A model like the current one on the perturbagen split of ``seed``.

    The split is :func:`~l1000_assets.core.model.split.assign_splits` with ``seed`` (its
    other defaults), the normalization statistics are those of its training perturbagens,
    and training is :func:`train_on_split` (validation sample seeded with ``seed``).
    """
    perts = split_perturbagens(files, seed)
    return train_on_split(
        files,
        perts,
        normalization_stats(files, perts[TRAIN]),
        model_config,
        train_config,
        checkpoint_dir,
        split_seed=seed,
        data_version=data_version,
        sample_seed=seed,
        log=log,
    )


def split_model_dir(splits_dir: Path, seed: int) -> Path:
    """The model directory of the split of ``seed``: ``<splits_dir>/seed=<seed>``."""
    return Path(splits_dir) / f"{SPLIT_DIR_PREFIX}{int(seed)}"


def find_split_models(splits_dir: Path) -> dict[int, Path]:
    """Split seed -> model directory, for every complete split model under ``splits_dir``
    (a ``seed=<int>`` directory with an embedding and a card), by seed."""
    found = {}
    if Path(splits_dir).is_dir():
        for path in Path(splits_dir).glob(f"{SPLIT_DIR_PREFIX}*"):
            seed = path.name[len(SPLIT_DIR_PREFIX) :]
            if (
                seed.lstrip("-").isdigit()
                and (path / EMBEDDING_FILE).exists()
                and (path / CARD_FILE).exists()
            ):
                found[int(seed)] = path
    return dict(sorted(found.items()))


def same_training(card: Mapping, other: Mapping) -> bool:
    """Whether two model cards describe models trained alike: same data version, model
    configuration and training configuration (split models of a current model)."""
    keys = ("data_version", "model_config", "train_config")
    return all(card.get(k) == other.get(k) for k in keys)
