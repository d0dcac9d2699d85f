"""evaluation_metrics materialized with Dagster on a small synthetic lake and model."""

import pandas as pd
import pytest

SMALL_MODEL = {"depth": 4, "growth": 16, "steps": 400, "checkpoint_every": 100, "batch_size": 256}
FAST_EVAL = {"max_wtcs_queries": 150, "bootstrap": 50}


@pytest.fixture(scope="module")
def evaluated(lake_graph):
    trained = lake_graph.run(
        ["perturbagen_split", "normalization_stats", "embedding_model"],
        config={"ops": {"embedding_model": {"config": SMALL_MODEL}}},
    )
    assert trained.success
    result = lake_graph.run(
        ["evaluation_metrics"], config={"ops": {"evaluation_metrics": {"config": FAST_EVAL}}}
    )
    return lake_graph, result


def _table(graph) -> pd.DataFrame:
    return pd.read_parquet(graph.root / "lake" / "evaluation" / "metrics.parquet")


def test_tidy_table_covers_protocols_methods_groups(evaluated):
    graph, result = evaluated
    assert result.success
    table = _table(graph)
    assert {"protocol", "group", "method", "metric", "value", "ci_low", "ci_high"} <= set(
        table.columns
    )
    assert set(table["protocol"]) == {"same_perturbagen", "replicates", "moa", "target"}
    assert set(table["method"]) == {"embedding", "zscore_cosine", "zscore_euclidean", "wtcs"}
    assert {"all", "small_molecules", "genetic"} <= set(table["group"])
    cells = {g for g in table["group"] if g.startswith("cell:")}
    assert cells == {f"cell:{c}" for c in graph.cells}
    assert set(table["metric"]) == {
        "median_quantile",
        "recall_top_0.001",
        "recall_top_0.01",
        "recall_top_0.1",
        "auc",
        "mcc",
    }
    assert not table.duplicated(["protocol", "group", "method", "metric"]).any()
    auc = table[table["metric"] == "auc"]
    assert auc["value"].between(0, 1).all()
    # One split: bootstrap intervals around the value.
    boot = auc[auc["ci_method"].str.startswith("bootstrap")]
    assert len(boot) and (boot["ci_low"] <= boot["value"] + 1e-9).all()
    assert (boot["value"] <= boot["ci_high"] + 1e-9).all()


def test_embedding_beats_zscore_and_check_passes(evaluated):
    graph, result = evaluated
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["embedding_beats_zscore_cosine"].passed
    table = _table(graph)
    same = table[(table["protocol"] == "same_perturbagen") & (table["group"] == "all")]
    v = same.set_index(["method", "metric"])["value"]
    assert v[("embedding", "auc")] > v[("zscore_cosine", "auc")]
    assert v[("embedding", "recall_top_0.01")] > v[("zscore_cosine", "recall_top_0.01")]
    # Replicates are easier than the same perturbagen across cell lines, doses and times.
    rep = table[
        (table["protocol"] == "replicates") & (table["group"] == "all") & (table["metric"] == "auc")
    ].set_index("method")["value"]
    assert rep["zscore_cosine"] > v[("zscore_cosine", "auc")]


def test_metadata_has_table1_and_plot(evaluated):
    graph, result = evaluated
    meta = result.asset_materializations_for_node("evaluation_metrics")[0].metadata
    table1 = meta["table1"].value
    assert "| all | embedding | ours |" in table1 and "| all | embedding | paper |" in table1
    assert "0.902" in table1  # the published embedding AUC beside ours
    assert "data:image/png;base64," in meta["recall_curves"].value
    assert (graph.root / "lake" / "evaluation" / "recall_curves.png").stat().st_size > 5000


def test_catalog_has_the_evaluation_view(evaluated):
    from l1000_assets.core.catalog.build import build_catalog, connect_read_only
    from l1000_assets.defs.catalog.assets import SQL_DIR

    graph, _ = evaluated
    db = graph.root / "catalog" / "eval.duckdb"
    build_catalog(db, SQL_DIR, graph.root / "lake")
    with connect_read_only(db) as con:
        rows = con.execute(
            'SELECT value FROM evaluation_metrics WHERE protocol = ? AND "group" = ? '
            "AND method = ? AND metric = ?",
            ["same_perturbagen", "all", "embedding", "auc"],
        ).fetchall()
    assert len(rows) == 1 and 0.5 < rows[0][0] <= 1


def test_a_failed_evaluation_keeps_the_last_table(evaluated):
    graph, _ = evaluated
    path = graph.root / "lake" / "evaluation" / "metrics.parquet"
    before = path.read_bytes()
    result = graph.run(
        ["evaluation_metrics"],
        raise_on_error=False,
        config={
            "ops": {
                "evaluation_metrics": {
                    "config": {**FAST_EVAL, "protocols": ["same_perturbagen", "bogus"]}
                }
            }
        },
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "unknown bogus" in str(failure.event_specific_data.error)
    assert path.read_bytes() == before


def test_extra_splits_train_more_models_and_give_t_intervals(evaluated):
    graph, _ = evaluated
    splits = graph.run(
        ["extra_split_models"], config={"ops": {"extra_split_models": {"config": {"n_splits": 1}}}}
    )
    assert splits.success
    result = graph.run(
        ["evaluation_metrics"],
        config={
            "ops": {
                "evaluation_metrics": {
                    "config": {
                        **FAST_EVAL,
                        "protocols": ["same_perturbagen"],
                        "methods": ["embedding", "zscore_cosine"],
                        "per_cell_line": False,
                    }
                }
            }
        },
    )
    assert result.success
    table = _table(graph)
    auc = table[(table["group"] == "all") & (table["metric"] == "auc")].set_index("method")
    assert (auc["n_splits"] == 2).all()
    assert (auc["ci_method"] == "t95 over 2 splits").all()
    assert (auc["ci_low"] < auc["value"]).all() and (auc["value"] < auc["ci_high"]).all()
    assert auc.loc["embedding", "value"] > auc.loc["zscore_cosine", "value"]
    meta = result.asset_materializations_for_node("evaluation_metrics")[0].metadata
    assert meta["n_splits"].value == 2
