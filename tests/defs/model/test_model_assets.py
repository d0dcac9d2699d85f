"""perturbagen_split -> normalization_stats -> embedding_model, one per split partition,
materialized with Dagster."""

import json

import numpy as np
import pandas as pd
import pytest

# 1,000 steps: on the synthetic release's held-out perturbagens 400 steps of this tiny model
# do not yet beat z-score cosine (the blocking check), 1,000 do (AUC 0.84 against 0.73).
SMALL_MODEL = {"depth": 4, "growth": 16, "steps": 1000, "checkpoint_every": 250, "batch_size": 256}
MODEL_ASSETS = ["perturbagen_split", "normalization_stats", "embedding_model"]


def train_split(graph, split, **kwargs):
    """Add the split partition when needed and materialize its model stage."""
    if split not in graph.instance.get_dynamic_partitions("split"):
        graph.instance.add_dynamic_partitions("split", [split])
    return graph.run(
        MODEL_ASSETS,
        partition=split,
        config={"ops": {"embedding_model": {"config": SMALL_MODEL}}},
        **kwargs,
    )


@pytest.fixture(scope="module")
def trained(lake_graph):
    return lake_graph, train_split(lake_graph, "split_0")


@pytest.fixture(scope="module")
def trained_all(lake_graph):
    return lake_graph, train_split(lake_graph, "all")


def _split(graph, key):
    return pd.read_parquet(graph.root / "lake" / "perturbagen_split" / f"split={key}.parquet")


def test_split_holds_out_perturbagens(trained):
    graph, result = trained
    assert result.success
    split = _split(graph, "split_0")
    assert split["pert_id"].is_unique
    assert set(split["split"]) == {"train", "validation", "test"}
    assert 0.1 < (split["split"] == "test").mean() < 0.3
    assert (split["seed"] == 0).all()


def test_model_artifacts_and_card(trained):
    graph, result = trained
    model_dir = graph.root / "models" / "embedding_model" / "split_0"
    assert {"embedding.keras", "training.keras", "card.json", "history.csv", "training.png"} <= {
        p.name for p in model_dir.iterdir()
    }
    card = json.loads((model_dir / "card.json").read_text())
    assert len(card["gene_order"]) == 978
    stats = json.loads((graph.root / "models" / "normalization_stats" / "split_0.json").read_text())
    assert card["normalization_sha256"] == stats["sha256"]
    assert card["split"] == "split_0" and card["split_seed"] == 0
    assert card["model_config"]["depth"] == 4
    split = _split(graph, "split_0")
    assert card["n_train_perturbagens"] == (split["split"] == "train").sum() == card["n_classes"]
    assert card["n_heldout_perturbagens"] == (split["split"] == "test").sum()
    assert card["checkpoint"] == "best on validation"
    meta = result.asset_materializations_for_node("embedding_model")[0].metadata
    assert meta["device"].value == "CPU"
    assert meta["steps"].value == SMALL_MODEL["steps"]
    assert meta["split"].value == "split_0"
    assert "20% of perturbagens held out" in meta["role"].value
    assert "SERVED" not in meta["role"].value
    assert "data:image/png;base64," in meta["history_plot"].value


def test_model_beats_zscore_on_heldout_perturbagens(trained):
    _, result = trained
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    check = checks["embedding_model_beats_zscore"]
    assert check.passed, check.metadata
    assert "heldout_auc_embedding" in check.metadata
    meta = result.asset_materializations_for_node("embedding_model")[0].metadata
    assert meta["heldout_auc_embedding"].value > meta["heldout_auc_zscore_cosine"].value


def test_the_all_model_trains_every_perturbagen_and_is_the_served_one(trained_all):
    graph, result = trained_all
    assert result.success
    split = _split(graph, "all")
    assert set(split["split"]) == {"train"} and split["seed"].isna().all()
    card = json.loads((graph.root / "models" / "embedding_model" / "all" / "card.json").read_text())
    assert card["split"] == "all" and card["split_seed"] is None
    assert card["n_train_perturbagens"] == len(split) == card["n_classes"]
    assert card["n_heldout_perturbagens"] == 0 and card["n_validation_perturbagens"] == 0
    assert card["heldout"] is None and card["best_validation_auc"] is None
    assert card["checkpoint"] == "last" and card["best_step"] == SMALL_MODEL["steps"]
    meta = result.asset_materializations_for_node("embedding_model")[0].metadata
    assert meta["role"].value.startswith("SERVED")
    assert meta["n_train_perturbagens"].value == len(split)
    check = {c.check_name: c for c in result.get_asset_check_evaluations()}[
        "embedding_model_beats_zscore"
    ]
    assert check.passed and "in_sample_auc_embedding" in check.metadata
    from l1000_assets.lib.resources import LakeResource

    assert LakeResource(root=str(graph.root)).model_dir == card_dir(graph, "all")


def card_dir(graph, split):
    return (graph.root / "models" / "embedding_model" / split).resolve()


def test_model_embeds_lake_profiles(trained):
    from l1000_assets.core.model.network import embed
    from l1000_assets.core.model.store import load_embedding

    graph, _ = trained
    model = load_embedding(graph.root / "models" / "embedding_model" / "split_0")
    x = np.random.default_rng(0).normal(size=(3, 978)).astype(np.float32)
    z = embed(model, x)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)


def test_rematerializing_with_the_same_config_resumes_without_training(trained):
    graph, _ = trained
    again = graph.run(
        ["embedding_model"],
        partition="split_0",
        config={"ops": {"embedding_model": {"config": SMALL_MODEL}}},
    )
    meta = again.asset_materializations_for_node("embedding_model")[0].metadata
    assert meta["resumed_from_step"].value == SMALL_MODEL["steps"]


def test_statistics_from_another_split_are_refused(trained):
    graph, _ = trained
    result = graph.run(
        ["perturbagen_split", "embedding_model"],
        partition="split_0",
        config={
            "ops": {
                "perturbagen_split": {"config": {"validation_fraction": 0.3}},
                "embedding_model": {"config": SMALL_MODEL},
            }
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "another set of training perturbagens" in str(failure.event_specific_data.error)
    # Put the default split_0 back for any later test.
    assert graph.run(["perturbagen_split"], partition="split_0").success


def test_a_malformed_split_key_fails_with_the_forms_it_accepts(lake_graph):
    lake_graph.instance.add_dynamic_partitions("split", ["holdout"])
    try:
        result = lake_graph.run(["perturbagen_split"], partition="holdout", raise_on_error=False)
    finally:
        lake_graph.instance.delete_dynamic_partition("split", "holdout")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "'holdout' is not a split" in str(failure.event_specific_data.error)
    assert "split_<seed>" in str(failure.event_specific_data.error)
