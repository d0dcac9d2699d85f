"""Deterministic assignment of perturbagens (never profiles) to train / validation / test.

:func:`all_training` is the split of the model trained on every perturbagen.

Each perturbagen id is hashed with the seed into ``[0, 1)``; the hash picks its fold
(``n_folds`` folds, fold ``test_fold`` is held out: 20% with 5 folds) and, among training
perturbagens, a ``validation_fraction`` used only to pick the best checkpoint. The
assignment depends on nothing but the id and the seed: adding a release never moves an
existing perturbagen between splits.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from numpy.typing import NDArray

TRAIN, VALIDATION, TEST = "train", "validation", "test"


def _unit_hash(values: list[str], seed: int, salt: str) -> NDArray[np.float64]:
    out = np.empty(len(values))
    for i, v in enumerate(values):
        digest = hashlib.sha256(f"{seed}:{salt}:{v}".encode()).digest()
        out[i] = int.from_bytes(digest[:8], "big") / 2**64
    return out


def assign_splits(
    pert_ids,
    *,
    seed: int = 0,
    n_folds: int = 5,
    test_fold: int = 0,
    validation_fraction: float = 0.1,
) -> pd.DataFrame:
    """One row per unique perturbagen: ``pert_id``, ``fold``, ``split``.

    Parameters
    ----------
    pert_ids
        Perturbagen ids (repeats are fine).
    seed
        Split seed; different seeds give independent splits (for confidence intervals).
    n_folds, test_fold
        ``n_folds`` folds of about equal size; perturbagens in ``test_fold`` are held out.
    validation_fraction
        Fraction of the *training* perturbagens set aside to select the best checkpoint.
    """
    if not 0 <= test_fold < n_folds:
        raise ValueError(f"test_fold must be in [0, {n_folds})")
    ids = sorted(pd.unique(pd.Series(pert_ids, dtype="string").dropna()))
    fold = np.floor(_unit_hash(ids, seed, "fold") * n_folds).astype(int)
    valid = _unit_hash(ids, seed, "validation") < validation_fraction
    split = np.where(fold == test_fold, TEST, np.where(valid, VALIDATION, TRAIN))
    return pd.DataFrame({"pert_id": ids, "fold": fold, "split": split})


def all_training(pert_ids) -> pd.DataFrame:
    """Every unique perturbagen in training (fold -1): the split of a model trained on all
    perturbagens, nothing held out and nothing set aside for validation (the paper's
    "direct training")."""
    ids = sorted(pd.unique(pd.Series(pert_ids, dtype="string").dropna()))
    return pd.DataFrame({"pert_id": ids, "fold": np.full(len(ids), -1), "split": TRAIN})


def split_sets(split: pd.DataFrame) -> dict[str, set[str]]:
    """``train``, ``validation`` and ``test`` -> the perturbagen ids of a split table."""
    return {s: set(split.loc[split["split"] == s, "pert_id"]) for s in (TRAIN, VALIDATION, TEST)}


def heldout_perturbagens(
    pert_ids, *, seed: int = 0, n_folds: int = 5, test_fold: int = 0
) -> NDArray[np.str_]:
    """The held-out (test) perturbagens of :func:`assign_splits`, sorted: the one meaning of
    "held out" for training, evaluation and calibration."""
    split = assign_splits(pert_ids, seed=seed, n_folds=n_folds, test_fold=test_fold)
    return split.loc[split["split"] == TEST, "pert_id"].to_numpy(dtype=str)
