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
from l1000_assets.core.model.split import TEST, TRAIN
from l1000_assets.core.model.split_models import (  # noqa: E402
    find_split_models,
    same_training,
    split_model_dir,
    split_perturbagens,
    train_split_model,
)
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
        split_seed=3,
        heldout={"embedding": _summary(0.9), "zscore_cosine": _summary(0.7)},
        created="2025-01-01T00:00:00Z",
    )
    assert card["model_config"] == TINY.to_dict() and card["train_config"] == asdict(SHORT)
    assert (card["data_version"], card["gene_order"], card["split_seed"]) == ("abc", ["1", "2"], 3)
    assert card["normalization_sha256"] == "f00" and card["created"] == "2025-01-01T00:00:00Z"
    assert (card["n_classes"], card["parameters"], card["training_seconds"]) == (80, 1234, 12.3)
    assert card["best_step"] == 200 and card["best_validation_auc"] == 0.81234
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


def test_split_model_is_trained_on_its_own_split_and_found_on_disk(small_lake, tmp_path):
    trained = train_split_model(
        small_lake, 1, TINY, SHORT, tmp_path / "ckpt", data_version="v1", log=lambda m: None
    )
    card = trained.card
    perts = split_perturbagens(small_lake, 1)
    assert card["split_seed"] == 1 and card["data_version"] == "v1"
    assert card["normalization_sha256"] == normalization_stats(small_lake, perts[TRAIN]).digest
    assert trained.result.n_classes == len(perts[TRAIN])
    assert len(card["gene_order"]) == 978
    # The z-score side of the held-out comparison is the direct same-perturbagen retrieval
    # of the split's test profiles.
    test = load_split_profiles(small_lake, perts[TEST])
    direct = RetrievalSummary.from_quantiles(
        same_label_quantiles(test.values, test.pert_ids), len(test.values)
    )
    assert card["heldout"]["zscore_cosine"] == direct.as_dict()
    assert set(card["heldout"]["embedding"]) == {"n_queries", "n_positives", *SUMMARY_METRICS}

    splits = tmp_path / "splits"
    save_model(split_model_dir(splits, 1), trained.result.embedding, card, trained.result.history)
    (splits / "seed=2").mkdir()  # incomplete: no model in it
    (splits / "notes").mkdir()
    assert find_split_models(splits) == {1: splits / "seed=1"}
    assert find_split_models(tmp_path / "nowhere") == {}
    saved = load_card(splits / "seed=1")
    assert same_training(saved, card)
    assert not same_training({**saved, "data_version": "v2"}, card)
    x = load_split_profiles(small_lake, perts[TEST]).values[:5]
    z = load_embedding(splits / "seed=1").predict(x, verbose=0)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
