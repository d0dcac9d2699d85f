"""The model card, the held-out comparison and the models of further splits."""

import json
from dataclasses import asdict

import numpy as np

from l1000_assets.core.evaluation.metrics import (
    SUMMARY_METRICS,
    RetrievalSummary,
    same_label_quantiles,
)
from l1000_assets.core.model.card import model_card  # noqa: E402
from l1000_assets.core.model.network import ModelConfig  # noqa: E402
from l1000_assets.core.model.normalization import normalization_stats  # noqa: E402
from l1000_assets.core.model.split import (
    TEST,
    TRAIN,
    VALIDATION,
    all_training,
    assign_splits,
    split_sets,
)
from l1000_assets.core.model.split_models import train_on_split
from l1000_assets.core.model.store import load_card, load_embedding, save_model  # noqa: E402
from l1000_assets.core.model.training import (  # noqa: E402
    TrainConfig,
    TrainResult,
    load_split_profiles,
)

TINY = ModelConfig(depth=2, growth=16, embedding_dim=16, margin_ramp=0.001)
SHORT = TrainConfig(steps=60, batch_size=128, checkpoint_every=30)


def _summary(auc: float) -> RetrievalSummary:
    return RetrievalSummary(10, 40, {m: auc if m == "auc" else 0.5 for m in SUMMARY_METRICS})


def test_model_card_gathers_configuration_data_and_figures():
    result = TrainResult(
        embedding=None,
        training_model=None,
        history=[],
        best_step=200,
        best_validation_auc=0.81234,
        resumed_from_step=0,
        device="CPU",
        batch_size=512,
        seconds=12.345,
        n_train_profiles=900,
        n_classes=80,
        extra={"parameters": 1234},
    )
    card = model_card(
        TINY,
        SHORT,
        result,
        data_version="abc",
        gene_order=("1", "2"),
        normalization_sha256="f00",
        split="split_3",
        split_seed=3,
        perturbagens={"train": 80, "validation": 9, "test": 22},
        heldout={"embedding": _summary(0.9), "zscore_cosine": _summary(0.7)},
        created="2025-01-01T00:00:00Z",
    )
    assert card["model_config"] == TINY.to_dict() and card["train_config"] == asdict(SHORT)
    assert (card["data_version"], card["gene_order"], card["split_seed"]) == ("abc", ["1", "2"], 3)
    assert card["normalization_sha256"] == "f00" and card["created"] == "2025-01-01T00:00:00Z"
    assert (card["n_classes"], card["parameters"], card["training_seconds"]) == (80, 1234, 12.3)
    assert card["best_step"] == 200 and card["best_validation_auc"] == 0.81234
    assert (card["split"], card["n_train_perturbagens"], card["n_heldout_perturbagens"]) == (
        "split_3",
        80,
        22,
    )
    assert card["heldout"]["embedding"] == {
        "n_queries": 10,
        "n_positives": 40,
        "median_quantile": 0.5,
        "recall_top_0.001": 0.5,
        "recall_top_0.01": 0.5,
        "recall_top_0.1": 0.5,
        "auc": 0.9,
    }
    assert json.loads(json.dumps(card)) == card


def _perts(files, seed):
    import pandas as pd
    import pyarrow.parquet as pq

    ids = pd.concat([pq.read_table(f, columns=["pert_id"]).to_pandas() for f in files])
    return split_sets(
        assign_splits(ids["pert_id"], seed=seed)
        if seed is not None
        else all_training(ids["pert_id"])
    )


def test_a_split_model_is_trained_on_its_split_and_described_by_its_card(small_lake, tmp_path):
    perts = _perts(small_lake, 1)
    stats = normalization_stats(small_lake, perts[TRAIN])
    trained = train_on_split(
        small_lake,
        perts,
        stats,
        TINY,
        SHORT,
        tmp_path / "ckpt",
        split="split_1",
        split_seed=1,
        data_version="v1",
        sample_seed=1,
        log=lambda m: None,
    )
    card = trained.card
    assert (card["split"], card["split_seed"], card["data_version"]) == ("split_1", 1, "v1")
    assert card["normalization_sha256"] == stats.digest
    assert trained.result.n_classes == len(perts[TRAIN]) == card["n_train_perturbagens"]
    assert card["n_heldout_perturbagens"] == len(perts[TEST])
    assert card["n_validation_perturbagens"] == len(perts[VALIDATION])
    assert card["checkpoint"] == "best on validation"
    assert len(card["gene_order"]) == 978
    # The z-score side of the held-out comparison is the direct same-perturbagen retrieval
    # of the split's test profiles.
    test = load_split_profiles(small_lake, perts[TEST])
    direct = RetrievalSummary.from_quantiles(
        same_label_quantiles(test.values, test.pert_ids), len(test.values)
    )
    assert card["heldout"]["zscore_cosine"] == direct.as_dict()
    assert set(card["heldout"]["embedding"]) == {"n_queries", "n_positives", *SUMMARY_METRICS}

    save_model(tmp_path / "split_1", trained.result.embedding, card, trained.result.history)
    assert load_card(tmp_path / "split_1") == json.loads(json.dumps(card))
    z = load_embedding(tmp_path / "split_1").predict(test.values[:5], verbose=0)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)


def test_the_all_split_trains_every_perturbagen_and_keeps_the_last_weights(small_lake, tmp_path):
    perts = _perts(small_lake, None)
    assert not perts[TEST] and not perts[VALIDATION]
    trained = train_on_split(
        small_lake,
        perts,
        normalization_stats(small_lake, perts[TRAIN]),
        TINY,
        SHORT,
        tmp_path / "ckpt",
        split="all",
        split_seed=None,
        data_version="v1",
        sample_seed=0,
        log=lambda m: None,
    )
    card = trained.card
    assert card["split"] == "all" and card["split_seed"] is None
    assert card["n_train_perturbagens"] == len(perts[TRAIN]) == trained.result.n_classes
    assert card["heldout"] is None and card["checkpoint"] == "last"
    assert card["best_step"] == trained.result.history[-1]["step"] == 60
    assert card["best_validation_auc"] is None
    assert json.loads(json.dumps(card)) == card
