"""The model card: what a trained embedding is, what it was trained on, and how it compares
with z-score cosine on held-out perturbagens.

:func:`heldout_comparison` scores same-perturbagen retrieval on the held-out (test)
profiles for the embedding and for z-score cosine; :func:`model_card` gathers the
configuration, data version, gene order, normalization digest, split seed, training figures
the split (its name, seed and perturbagen counts: a served ``all`` model says it trained on
every perturbagen) and that comparison into the JSON-ready dict saved as ``card.json``
(:mod:`l1000_assets.core.model.store`).

TensorFlow is imported lazily (only :func:`heldout_comparison` embeds profiles).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import numpy as np

from l1000_assets.core.evaluation.metrics import RetrievalSummary, same_label_quantiles
from l1000_assets.core.model.training import SplitProfiles, TrainConfig, TrainResult

MODEL_NAME = "l1000_assets deep metric embedding (Donner et al. 2018)"
MODEL_INPUT = (
    "level-4 landmark z-scores, 978 columns in gene_order; standardization is inside the model"
)
HELDOUT_MAX_PROFILES = 6000
"""Held-out profiles scored by :func:`heldout_comparison` (a seeded subsample beyond)."""


def heldout_comparison(
    embedding,
    test: SplitProfiles,
    *,
    max_profiles: int = HELDOUT_MAX_PROFILES,
    seed: int = 0,
) -> dict[str, RetrievalSummary]:
    """Same-perturbagen retrieval on held-out profiles: embedding vs z-score cosine.

    Parameters
    ----------
    embedding
        The inference model (``keras.Model``: raw landmark z-scores -> unit vectors).
    test
        The held-out profiles (every query ranks all others).
    max_profiles, seed
        A seeded subsample of ``max_profiles`` profiles when there are more.

    Returns
    -------
    dict
        ``"zscore_cosine"`` and ``"embedding"`` -> :class:`RetrievalSummary`.
    """
    from l1000_assets.core.model.network import embed

    idx = np.arange(len(test.values))
    if len(idx) > max_profiles:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_profiles, replace=False))
    x, labels = test.values[idx], test.pert_ids[idx]
    return {
        name: RetrievalSummary.from_quantiles(same_label_quantiles(v, labels), len(idx))
        for name, v in (("zscore_cosine", x), ("embedding", embed(embedding, x)))
    }


def model_card(
    model_config,
    train_config: TrainConfig,
    result: TrainResult,
    *,
    data_version: str,
    gene_order: Sequence[str],
    normalization_sha256: str,
    split: str,
    split_seed: int | None,
    perturbagens: Mapping[str, int],
    heldout: Mapping[str, RetrievalSummary] | None,
    created: str | None = None,
) -> dict:
    """The model card of a trained embedding, as saved in ``card.json``.

    Parameters
    ----------
    model_config, train_config
        The :class:`~l1000_assets.core.model.network.ModelConfig` and :class:`TrainConfig`
        it was trained with.
    result
        What :func:`~l1000_assets.core.model.training.train` returned.
    data_version
        The lake's fingerprint the model was trained on.
    gene_order
        The 978 landmark gene ids, in the model's input order.
    normalization_sha256
        The digest of the normalization statistics inside the model.
    split, split_seed
        The perturbagen split it was trained on: its name (``all`` or ``split_<seed>``) and
        hash seed (``None`` for ``all``: every perturbagen trained).
    perturbagens
        ``train``, ``validation``, ``test`` -> number of perturbagens of the split.
    heldout
        :func:`heldout_comparison` of the trained model; ``None`` when nothing is held out.
    created
        UTC time stamp; ``None``: now.
    """
    return {
        "model": MODEL_NAME,
        "created": created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model_config": model_config.to_dict(),
        "train_config": asdict(train_config),
        "data_version": data_version,
        "gene_order": list(gene_order),
        "normalization_sha256": normalization_sha256,
        "split": split,
        "split_seed": None if split_seed is None else int(split_seed),
        "n_train_perturbagens": int(perturbagens["train"]),
        "n_validation_perturbagens": int(perturbagens["validation"]),
        "n_heldout_perturbagens": int(perturbagens["test"]),
        "n_classes": result.n_classes,
        "n_train_profiles": result.n_train_profiles,
        "device": result.device,
        "batch_size": result.batch_size,
        "parameters": result.extra["parameters"],
        "checkpoint": "best on validation" if perturbagens["validation"] else "last",
        "best_step": result.best_step,
        "best_validation_auc": (result.best_validation_auc if perturbagens["validation"] else None),
        "heldout": (
            {name: summary.as_dict() for name, summary in heldout.items()} if heldout else None
        ),
        "training_seconds": round(result.seconds, 1),
        "input": MODEL_INPUT,
    }
