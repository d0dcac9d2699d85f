"""perturbagen_split -> normalization_stats -> embedding_model, materialized with Dagster."""

import json

import numpy as np
import pandas as pd
import pytest

SMALL_MODEL = {"depth": 4, "growth": 16, "steps": 400, "checkpoint_every": 100, "batch_size": 256}


@pytest.fixture(scope="module")
def trained(lake_graph):
    result = lake_graph.run(
        ["perturbagen_split", "normalization_stats", "embedding_model"],
        config={"ops": {"embedding_model": {"config": SMALL_MODEL}}},
    )
    return lake_graph, result


def test_split_holds_out_perturbagens(trained):
    graph, result = trained
    assert result.success
    split = pd.read_parquet(graph.root / "lake" / "perturbagen_split.parquet")
    assert split["pert_id"].is_unique
    assert set(split["split"]) == {"train", "validation", "test"}
    assert 0.1 < (split["split"] == "test").mean() < 0.3


def test_model_artifacts_and_card(trained):
    graph, result = trained
    model_dir = graph.root / "models" / "embedding_model"
    assert {"embedding.keras", "training.keras", "card.json", "history.csv", "training.png"} <= {
        p.name for p in model_dir.iterdir()
    }
    card = json.loads((model_dir / "card.json").read_text())
    assert len(card["gene_order"]) == 978
    stats = json.loads((graph.root / "models" / "normalization_stats.json").read_text())
    assert card["normalization_sha256"] == stats["sha256"]
    assert card["split_seed"] == 0 and card["model_config"]["depth"] == 4
    meta = result.asset_materializations_for_node("embedding_model")[0].metadata
    assert meta["device"].value == "CPU"
    assert meta["steps"].value == 400
    assert "data:image/png;base64," in meta["history_plot"].value


def test_model_beats_zscore_on_heldout_perturbagens(trained):
    _, result = trained
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    check = checks["embedding_model_beats_zscore"]
    assert check.passed, check.metadata
    meta = result.asset_materializations_for_node("embedding_model")[0].metadata
    assert meta["heldout_auc_embedding"].value > meta["heldout_auc_zscore_cosine"].value


def test_model_embeds_lake_profiles(trained):
    from l1000_assets.core.model.network import embed
    from l1000_assets.core.model.store import load_embedding

    graph, _ = trained
    model = load_embedding(graph.root / "models" / "embedding_model")
    x = np.random.default_rng(0).normal(size=(3, 978)).astype(np.float32)
    z = embed(model, x)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)


def test_rematerializing_with_the_same_config_resumes_without_training(trained):
    graph, _ = trained
    again = graph.run(
        ["embedding_model"], config={"ops": {"embedding_model": {"config": SMALL_MODEL}}}
    )
    meta = again.asset_materializations_for_node("embedding_model")[0].metadata
    assert meta["resumed_from_step"].value == 400


def test_statistics_from_another_split_are_refused(trained):
    graph, _ = trained
    result = graph.run(
        ["perturbagen_split", "embedding_model"],
        config={
            "ops": {
                "perturbagen_split": {"config": {"seed": 1}},
                "embedding_model": {"config": SMALL_MODEL},
            }
        },
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "another set of training perturbagens" in str(failure.event_specific_data.error)
    # Put the seed-0 split back for any later test.
    assert graph.run(["perturbagen_split"]).success
