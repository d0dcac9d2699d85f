"""Training a model on one perturbagen split and describing it.

:func:`train_on_split` is the one way a model is trained here, whatever the split: a
validation sample of the split's validation perturbagens (when it has any), the checkpointed
loop of :func:`~l1000_assets.core.model.training.train`, the held-out comparison on the
split's test perturbagens (when it has any) and the model card. ``embedding_model[split]``
calls it for every split partition: ``split_<seed>`` holds 20% of the perturbagens out (best
checkpoint on its validation perturbagens), ``all`` trains every perturbagen (no held-out
comparison; the last checkpoint is kept, as in the paper's fixed schedule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from l1000_assets.core.lake.read import read_profile_gene_ids
from l1000_assets.core.model.card import heldout_comparison, model_card
from l1000_assets.core.model.normalization import NormalizationStats
from l1000_assets.core.model.split import TEST, TRAIN, VALIDATION
from l1000_assets.core.model.training import TrainConfig, TrainResult, load_split_profiles, train
from l1000_assets.core.progress import Log

VALIDATION_PROFILES = 4000
"""Validation profiles scored after every checkpoint chunk (a seeded sample)."""


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
    split: str,
    split_seed: int | None,
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
        ``train``, ``validation`` and ``test`` -> perturbagen ids of the split (validation
        and test may be empty: the ``all`` split).
    stats
        Normalization statistics of the training perturbagens' profiles.
    model_config, train_config
        Architecture and schedule.
    checkpoint_dir
        Checkpoints of the run (resumed when compatible).
    split, split_seed
        The split's name (its partition key) and hash seed (``None``: nothing held out);
        both recorded in the card.
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
    heldout = None
    if perts[TEST]:
        test = load_split_profiles(files, perts[TEST])
        heldout = heldout_comparison(result.embedding, test, seed=sample_seed)
    card = model_card(
        model_config,
        train_config,
        result,
        data_version=data_version,
        gene_order=read_profile_gene_ids(files[0]),
        normalization_sha256=stats.digest,
        split=split,
        split_seed=split_seed,
        perturbagens={s: len(perts[s]) for s in (TRAIN, VALIDATION, TEST)},
        heldout=heldout,
    )
    return TrainedModel(result, card)
