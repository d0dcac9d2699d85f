"""evaluation_ranks[split] and evaluation_metrics materialized with Dagster on a small
synthetic lake: one held-out split (with the gene-set protocol, from the signature store),
then a second one pooled with it, and the all model's direct-training variant."""

import pandas as pd
import pytest

from tests.defs.model.test_model_assets import SMALL_MODEL, train_split

BASE_METHODS = ["embedding", "zscore_cosine", "zscore_euclidean", "wtcs"]
# The profile baselines only (whether or not compound_fingerprints ran earlier in the
# session); the structure methods have their own test at the end.
FAST_RANKS = {"max_wtcs_queries": 150, "geneset_queries": 80, "methods": BASE_METHODS}
REFERENCE = {"ops": {"connectivity_reference": {"config": {"n_queries": 120}}}}
PROFILE_METHODS = set(BASE_METHODS)
FAST_METRICS = {"bootstrap": 50}


def rank_split(graph, split, config=None):
    assert train_split(graph, split).success
    return graph.run(
        ["evaluation_ranks"],
        partition=split,
        config={"ops": {"evaluation_ranks": {"config": config or FAST_RANKS}}},
    )


@pytest.fixture(scope="module")
def evaluated(lake_graph):
    for split in list(lake_graph.instance.get_dynamic_partitions("split")):
        if split != "split_0":  # start from one held-out split, whatever ran before
            lake_graph.instance.delete_dynamic_partition("split", split)
    # The gene-set protocol reads the signature store and its tau reference.
    signatures = lake_graph.run(
        ["connectivity_signatures", "connectivity_reference"], config=REFERENCE
    )
    assert signatures.success
    assert rank_split(lake_graph, "split_0").success
    result = lake_graph.run(
        ["evaluation_metrics"], config={"ops": {"evaluation_metrics": {"config": FAST_METRICS}}}
    )
    return lake_graph, result


def _table(graph, name="metrics.parquet") -> pd.DataFrame:
    return pd.read_parquet(graph.root / "lake" / "evaluation" / name)


def test_tidy_table_covers_protocols_methods_groups(evaluated):
    graph, result = evaluated
    assert result.success
    table = _table(graph)
    assert {
        "protocol",
        "group",
        "method",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "n_queries",
        "n_positives",
    } <= set(table.columns)
    # target: positives share the compound's whole target list; with the real multi-target
    # annotations the few held-out compounds of this small release may share none.
    protocols = {"same_perturbagen", "replicates", "moa", "target", "gene_set"}
    assert {"same_perturbagen", "replicates", "moa", "gene_set"} <= set(table["protocol"])
    assert set(table["protocol"]) <= protocols
    profiles = table[table["protocol"] != "gene_set"]
    assert set(profiles["method"]) == PROFILE_METHODS
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
    # Drug level is compounds only: one group, fewer queries than the held-out perturbagens.
    assert set(table.loc[table["protocol"] == "moa", "group"]) == {"all"}
    # WTCS ranks a seeded subsample of the queries; the count says so.
    same = table[(table["protocol"] == "same_perturbagen") & (table["group"] == "all")]
    n = same.groupby("method")["n_queries"].first()
    assert n["wtcs"] == 150 and n["embedding"] == n["zscore_cosine"] > 150


def test_gene_set_protocol_is_pooled_like_the_others(evaluated):
    """Every gene-set method on the same held-out queries, with the same metrics and groups
    as the profile protocols, in the Table-1 summary; the split's model embeds them."""
    graph, result = evaluated
    table = _table(graph)
    genes = table[table["protocol"] == "gene_set"]
    assert set(genes["method"]) == {"wtcs", "ncs", "tau", "mwu", "embedding"}
    assert set(genes["metric"]) == set(table["metric"])
    assert {"all", "small_molecules", "genetic"} <= set(genes["group"])
    every = genes[genes["group"] == "all"]
    assert every["n_queries"].nunique() == 1 and every["n_positives"].nunique() == 1
    assert int(every["n_queries"].iloc[0]) == 80
    auc = every[every["metric"] == "auc"].set_index("method")["value"]
    assert (auc[["wtcs", "ncs", "tau", "mwu"]] > 0.6).all()  # well above chance (0.5)
    assert (
        "Gene-set queries"
        in result.asset_materializations_for_node("evaluation_metrics")[0].metadata["table1"].value
    )
    ranks = pd.read_parquet(graph.root / "lake" / "evaluation_ranks" / "split=split_0.parquet")
    split = pd.read_parquet(graph.root / "lake" / "perturbagen_split" / "split=split_0.parquet")
    heldout = set(split.loc[split["split"] == "test", "pert_id"])
    assert set(ranks.loc[ranks["protocol"] == "gene_set", "cluster"]) <= heldout


def test_gene_set_protocol_waits_for_the_signature_store(evaluated):
    """Without the store the other protocols run and the gene-set one is skipped, said so."""
    graph, _ = evaluated
    store = graph.root / "lake" / "connectivity" / "signatures"
    aside = store.with_name("signatures.aside")
    store.rename(aside)
    try:
        config = {**FAST_RANKS, "protocols": ["same_perturbagen", "gene_set"]}
        result = graph.run(
            ["evaluation_ranks"],
            partition="split_0",
            config={"ops": {"evaluation_ranks": {"config": {**config, "methods": ["wtcs"]}}}},
        )
    finally:
        aside.rename(store)
    assert result.success
    meta = result.asset_materializations_for_node("evaluation_ranks")[0].metadata
    assert meta["gene_set"].value.startswith("skipped: no signature store")
    ranks = pd.read_parquet(graph.root / "lake" / "evaluation_ranks" / "split=split_0.parquet")
    assert set(ranks["protocol"]) == {"same_perturbagen"}
    again = graph.run(  # the full ranks back, for the tests below
        ["evaluation_ranks"],
        partition="split_0",
        config={"ops": {"evaluation_ranks": {"config": FAST_RANKS}}},
    )
    assert again.success


def test_balanced_mcc_is_the_papers_quantity(evaluated):
    from scipy.stats import norm

    graph, _ = evaluated
    table = _table(graph)
    same = table[(table["protocol"] == "same_perturbagen") & (table["group"] == "all")]
    v = same.set_index(["method", "metric"])["value"]
    for method in ("embedding", "zscore_cosine"):
        # Balanced positives and negatives: far above what an all-pairs MCC could reach
        # here (about 0.07), and near the normal-score relation to AUC.
        mcc, auc = v[(method, "mcc")], v[(method, "auc")]
        assert 0.15 < mcc < 1
        assert mcc == pytest.approx(2 * norm.cdf(norm.ppf(auc) / 2**0.5) - 1, abs=0.12)


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
    assert "queries / positives" in table1
    assert "data:image/png;base64," in meta["recall_curves"].value
    assert (graph.root / "lake" / "evaluation" / "recall_curves.png").stat().st_size > 5000
    assert meta["n_splits"].value == 1 and meta["heldout_splits"].value == "split_0"


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


def test_a_failed_evaluation_keeps_the_last_ranks(evaluated):
    graph, _ = evaluated
    path = graph.root / "lake" / "evaluation_ranks" / "split=split_0.parquet"
    before = path.read_bytes()
    result = graph.run(
        ["evaluation_ranks"],
        partition="split_0",
        raise_on_error=False,
        config={
            "ops": {
                "evaluation_ranks": {
                    "config": {**FAST_RANKS, "protocols": ["same_perturbagen", "bogus"]}
                }
            }
        },
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "unknown bogus" in str(failure.event_specific_data.error)
    assert path.read_bytes() == before


def test_a_second_split_is_pooled_and_the_all_model_gives_the_direct_variant(evaluated):
    graph, _ = evaluated
    first = _table(graph)
    small = {**FAST_RANKS, "protocols": ["same_perturbagen", "target"]}
    assert rank_split(graph, "split_1", small).success
    assert rank_split(graph, "all").success
    result = graph.run(
        ["evaluation_metrics"],
        config={
            "ops": {"evaluation_metrics": {"config": {**FAST_METRICS, "per_cell_line": False}}}
        },
    )
    assert result.success
    table = _table(graph)
    same = table[(table["protocol"] == "same_perturbagen") & (table["group"] == "all")]
    auc = same[same["metric"] == "auc"].set_index("method")
    assert (auc["n_splits"] == 2).all()
    assert (auc["ci_method"] == "t95 over 2 splits").all()
    assert (auc["ci_low"] < auc["ci_high"]).all()
    assert auc.loc["embedding", "value"] > auc.loc["zscore_cosine", "value"]
    # Pooled: the second split's held-out profiles add to the first's queries and positives.
    one = first[(first["protocol"] == "same_perturbagen") & (first["group"] == "all")]
    one = one[one["metric"] == "auc"].set_index("method")
    assert (auc["n_queries"] > one["n_queries"]).all()
    assert (auc["n_positives"] > one["n_positives"]).all()
    per_split = _table(graph, "metrics_per_split.parquet")
    spread = per_split[
        (per_split["protocol"] == "same_perturbagen")
        & (per_split["group"] == "all")
        & (per_split["metric"] == "auc")
        & (per_split["method"] == "embedding")
    ].set_index("split")
    assert set(spread.index) == {"split_0", "split_1"}
    assert spread["n_positives"].sum() == auc.loc["embedding", "n_positives"]
    # The direct-training variant: the all model over every compound, beside the held-out.
    direct = table[(table["protocol"] == "target_direct") & (table["metric"] == "auc")]
    assert set(direct["method"]) == {"embedding", "zscore_cosine", "zscore_euclidean", "wtcs"}
    held = table[(table["protocol"] == "target") & (table["metric"] == "auc")]
    assert direct["n_queries"].max() > held["n_queries"].max()
    assert (direct["n_splits"] == 1).all()
    meta = result.asset_materializations_for_node("evaluation_metrics")[0].metadata
    assert meta["n_splits"].value == 2 and meta["direct_training"].value == "all"
    assert "target_direct" in meta["table1"].value


def test_ranks_of_an_older_model_are_left_out(evaluated):
    graph, _ = evaluated
    retrained = graph.run(
        ["embedding_model"],
        partition="split_1",
        config={"ops": {"embedding_model": {"config": {**SMALL_MODEL, "seed": 1}}}},
    )
    assert retrained.success
    result = graph.run(
        ["evaluation_metrics"], config={"ops": {"evaluation_metrics": {"config": FAST_METRICS}}}
    )
    assert result.success
    meta = result.asset_materializations_for_node("evaluation_metrics")[0].metadata
    assert meta["stale_splits"].value == "split_1"
    assert meta["heldout_splits"].value == "split_0"


def test_tanimoto_and_combo_at_drug_level_with_the_breakdown_by_structure(evaluated):
    """With compound_fingerprints materialized, the default methods add ECFP4 Tanimoto and
    the combo at drug level (held-out and direct), on the same queries as the embedding; the
    breakdown by pair Tanimoto and the synthetic label come with the figures."""
    graph, _ = evaluated
    assert graph.run(["compound_fingerprints"]).success
    for split in ("split_0", "all"):
        ranked = graph.run(
            ["evaluation_ranks"],
            partition=split,
            config={"ops": {"evaluation_ranks": {"config": {"max_wtcs_queries": 150}}}},
        )
        assert ranked.success
    result = graph.run(
        ["evaluation_metrics"], config={"ops": {"evaluation_metrics": {"config": FAST_METRICS}}}
    )
    assert result.success
    table = _table(graph)
    auc = table[(table["metric"] == "auc") & (table["group"] == "all")]
    present = set(auc["protocol"])
    assert {"moa", "moa_direct", "target_direct"} <= present
    for protocol in sorted(present & {"moa", "target", "moa_direct", "target_direct"}):
        sub = auc[auc["protocol"] == protocol].set_index("method")
        assert {"tanimoto", "combo", "embedding", "zscore_cosine"} <= set(sub.index), protocol
        for m in ("tanimoto", "combo", "zscore_cosine"):  # the same queries and positives
            assert sub.loc[m, "n_queries"] == sub.loc["embedding", "n_queries"]
            assert sub.loc[m, "n_positives"] == sub.loc["embedding", "n_positives"]
        assert sub["value"].between(0, 1).all()
    assert not set(auc.loc[auc["protocol"] == "same_perturbagen", "method"]) & {
        "tanimoto",
        "combo",
    }
    assert table["synthetic"].all()
    breakdown = _table(graph, "structure_breakdown.parquet")
    b = breakdown[(breakdown["protocol"] == "target_direct") & (breakdown["metric"] == "auc")]
    per_method = b.groupby("method")["n_positives"].sum()
    target = auc[auc["protocol"] == "target_direct"].set_index("method")["n_positives"]
    assert per_method["embedding"] == target["embedding"]  # every positive in one bin
    meta = result.asset_materializations_for_node("evaluation_metrics")[0].metadata
    assert meta["synthetic"].value is True
    assert meta["table1"].value.startswith("**Synthetic release**")
    # The breakdown as a table in the UI (bins of the pair Tanimoto), and in Table 1's text.
    shown = meta["structure_breakdown"].value
    assert {r.data["tanimoto_bin"] for r in shown.records} >= {"[0, 0.2)"}
    assert "pair Tanimoto" in meta["table1"].value
