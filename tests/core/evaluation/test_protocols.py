"""Protocols and the tidy metrics table: worked by hand, intervals, the Table-1 layout."""

import math

import numpy as np
import pandas as pd
import pytest

from l1000_assets.core.evaluation.metrics import recall_at
from l1000_assets.core.evaluation.protocols import (
    EvaluationConfig,
    HeldOut,
    ProtocolRun,
    load_perturbagen_means,
    perturbagen_means,
    run_direct,
    run_protocols,
)
from l1000_assets.core.evaluation.report import (
    metrics_table,
    ranks_table,
    recall_curves,
    table1_markdown,
)
from l1000_assets.core.evaluation.retrieval import RetrievalResult, mcc, retrieval


def _run(quantiles, owners, n_queries, clusters, pos=None, neg=None, kinds=None):
    q = np.asarray(quantiles, float)
    pos = np.linspace(1.0, 0.5, len(q)) if pos is None else np.asarray(pos, np.float32)
    neg = np.zeros(len(q)) if neg is None else np.asarray(neg, np.float32)
    result = RetrievalResult(q, np.asarray(owners), n_queries, pos, neg)
    kinds = (
        np.where(np.arange(n_queries) < 2, "small_molecules", "genetic") if kinds is None else kinds
    )
    return ProtocolRun(
        "same_perturbagen",
        "embedding",
        result,
        np.asarray(kinds),
        np.full(n_queries, "A375"),
        np.asarray(clusters),
    )


def _table(runs_by_split, **kwargs):
    ranks = pd.concat(
        [ranks_table(runs, split) for split, runs in runs_by_split.items()], ignore_index=True
    )
    return metrics_table(ranks, **{"n_boot": 0, **kwargs})


def test_metrics_worked_by_hand():
    # Four positives of three queries: q = 0, 0.005, 0.01, 0.5. A positive exactly at the
    # threshold counts one half (the paper's sgn): top-0.01 recall = (1 + 1 + 0.5 + 0) / 4.
    # Scores: positives 0.9 0.8 0.6 0.4, their paired negatives 0.7 0.3 0.2 0.1: pooled
    # median 0.5, tp 3, fn 1, fp 1, tn 3: MCC (9 - 1) / sqrt(4 * 4 * 4 * 4) = 0.5.
    run = _run(
        [0.0, 0.005, 0.01, 0.5],
        [0, 0, 1, 2],
        3,
        ["a", "a", "b"],
        pos=[0.9, 0.8, 0.6, 0.4],
        neg=[0.7, 0.3, 0.2, 0.1],
    )
    table, per_split = _table({"split_0": [run]})
    v = table[table["group"] == "all"].set_index("metric")["value"]
    assert v["median_quantile"] == pytest.approx((0.005 + 0.01) / 2)
    assert v["recall_top_0.001"] == pytest.approx(0.25)
    assert v["recall_top_0.01"] == pytest.approx(0.625)
    assert v["recall_top_0.1"] == pytest.approx(0.75)
    assert v["auc"] == pytest.approx(1 - (0.0 + 0.005 + 0.01 + 0.5) / 4)
    assert v["mcc"] == pytest.approx(0.5)
    assert mcc(0, 0, 5, 5) == 0.0
    counts = table[table["group"] == "all"].iloc[0]
    assert (counts["n_queries"], counts["n_positives"], counts["n_splits"]) == (3, 4, 1)
    # Group small molecules: queries 0 and 1 only (positives 0.9 0.8 0.6 | 0.7 0.3 0.2:
    # median 0.65, tp 2, fp 1: MCC (2 * 2 - 1 * 1) / sqrt(3 * 3 * 3 * 3) = 1/3).
    sm = table[table["group"] == "small_molecules"].set_index("metric")
    assert sm.loc["auc", "value"] == pytest.approx(1 - (0.0 + 0.005 + 0.01) / 3)
    assert sm.loc["mcc", "value"] == pytest.approx(1 / 3)
    assert (sm["n_queries"].iloc[0], sm["n_positives"].iloc[0]) == (2, 3)
    assert set(per_split["split"]) == {"split_0"}


def test_recall_at_counts_ties_with_the_threshold_as_one_half():
    q = np.array([0.0, 0.01, 0.01, 0.02])
    assert recall_at(q, 0.01) == pytest.approx((1 + 0.5 + 0.5) / 4)
    assert recall_at(q, 0.015) == pytest.approx(0.75)
    np.testing.assert_allclose(recall_at(q, np.array([0.0, 0.01, 1.0])), [0.125, 0.5, 1.0])
    assert recall_at(q, 0.01, weights=np.array([2.0, 0.0, 0.0, 2.0])) == pytest.approx(0.5)


def test_ranks_are_pooled_across_splits_and_the_spread_is_per_split():
    # Split A: q = 0.1, 0.1; split B: 0.2, 0.2, 0.2, 0.8. Pooled: median 0.2 (not the mean
    # of the split medians, 0.15), AUC 1 - 1.6 / 6.
    a = _run([0.1, 0.1], [0, 1], 2, ["a", "b"])
    b = _run([0.2, 0.2, 0.2, 0.8], [0, 1, 2, 3], 4, ["c", "d", "e", "f"])
    table, per_split = _table({"split_0": [a], "split_1": [b]})
    auc = table[(table["group"] == "all") & (table["metric"] == "auc")].iloc[0]
    assert auc["value"] == pytest.approx(1 - 1.6 / 6)
    med = table[(table["group"] == "all") & (table["metric"] == "median_quantile")].iloc[0]
    assert med["value"] == pytest.approx(0.2)
    assert (auc["n_splits"], auc["n_queries"], auc["n_positives"]) == (2, 6, 6)
    split_auc = per_split[(per_split["group"] == "all") & (per_split["metric"] == "auc")]
    assert split_auc.set_index("split")["value"].to_dict() == pytest.approx(
        {"split_0": 0.9, "split_1": 1 - 1.4 / 4}
    )
    # The interval is a t interval of the per-split values: mean m, sd s, t(0.975, 1).
    values = np.array([0.9, 1 - 1.4 / 4])
    half = 12.706204736174698 * values.std(ddof=1) / math.sqrt(2)
    assert auc["ci_low"] == pytest.approx(values.mean() - half)
    assert auc["ci_high"] == pytest.approx(values.mean() + half)
    assert auc["ci_method"] == "t95 over 2 splits"


def test_bootstrap_interval_brackets_the_value_and_is_seeded():
    rng = np.random.default_rng(0)
    owners = np.repeat(np.arange(40), 5)
    q = rng.uniform(0, 0.6, len(owners))
    run = _run(q, owners, 40, np.repeat([f"p{i}" for i in range(10)], 4))
    a, _ = _table({"split_0": [run]}, n_boot=300, seed=1)
    b, _ = _table({"split_0": [run]}, n_boot=300, seed=1)
    pd.testing.assert_frame_equal(a, b)
    auc = a[(a["group"] == "all") & (a["metric"] == "auc")].iloc[0]
    assert auc["ci_low"] < auc["value"] < auc["ci_high"]
    assert auc["ci_high"] - auc["ci_low"] < 0.2
    assert auc["ci_method"].startswith("bootstrap")


def test_perturbagen_means_and_recall_curve():
    x = np.array([[1, 0], [3, 0], [0, 2]], np.float32)
    ids, means = perturbagen_means(x, np.array(["b", "b", "a"]), normalize=False)
    assert list(ids) == ["a", "b"]
    np.testing.assert_allclose(means, [[0, 2], [2, 0]])
    _, unit = perturbagen_means(x, np.array(["b", "b", "a"]), normalize=True)
    np.testing.assert_allclose(unit, [[0, 1], [1, 0]])
    ranks = ranks_table([_run([0.0, 0.5], [0, 1], 2, ["a", "b"])], "split_0")
    curve = recall_curves(ranks).set_index("quantile")["recall"]
    assert curve[0.0] == 0.25 and curve[1.0] == 1.0  # q = 0 at x = 0 counts one half


def _heldout(n_perts=30, reps=6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_perts, 978)).astype(np.float32)
    pert = np.repeat(np.arange(n_perts), reps)
    values = centers[pert] + rng.normal(scale=2.0, size=(len(pert), 978)).astype(np.float32)
    meta = pd.DataFrame(
        {
            "inst_id": [f"i{i}" for i in range(len(pert))],
            "pert_id": [f"P{p:03d}" for p in pert],
            "pert_iname": [f"drug{p}" for p in pert],
            "pert_type": np.where(pert % 3 == 0, "trt_sh", "trt_cp"),
            "cell_id": np.where(np.arange(len(pert)) % 2 == 0, "A375", "MCF7"),
            "pert_dose": np.where(np.arange(len(pert)) % 3 == 0, 10.0, 1.0),
            "pert_time": 24.0,
            "moa": [f"moa{p % 5}" for p in pert],
            "target": [None if p % 4 == 0 else f"T{p % 7}" for p in pert],
        }
    )
    return HeldOut(values, meta)


def test_run_protocols_on_a_structured_set():
    held = _heldout()
    config = EvaluationConfig(
        methods=["zscore_cosine", "zscore_euclidean", "wtcs"], max_wtcs_queries=50
    )
    runs = run_protocols(held, None, config)
    assert {(r.protocol, r.method) for r in runs} == {
        (p, m)
        for p in ("same_perturbagen", "replicates", "moa", "target")
        for m in ("zscore_cosine", "zscore_euclidean", "wtcs")
    }
    table, _ = metrics_table(ranks_table(runs, "split_0"), n_boot=20)
    auc = table[(table["metric"] == "auc") & (table["group"] == "all")].set_index(
        ["protocol", "method"]
    )["value"]
    # Strong perturbagen signal: every method retrieves the same perturbagen well.
    for m in ("zscore_cosine", "zscore_euclidean", "wtcs"):
        assert auc[("same_perturbagen", m)] > 0.9
    wtcs = next(r for r in runs if r.protocol == "same_perturbagen" and r.method == "wtcs")
    assert wtcs.result.n_queries == 50
    # Drug level: one vector per annotated compound (pert_type trt_cp, never the genetic
    # perturbagens, every third here); target leaves out the unannotated.
    target = next(r for r in runs if r.protocol == "target" and r.method == "zscore_cosine")
    assert target.result.n_queries == sum(1 for p in range(30) if p % 4 and p % 3)
    assert set(target.query_kinds) == {"small_molecules"}
    assert {"genetic", "small_molecules", "cell:A375", "cell:MCF7"} <= set(table["group"])
    assert set(table.loc[table["protocol"] == "target", "group"]) == {"all"}
    md = table1_markdown(table)
    assert "| all | zscore_cosine | paper | 0.1700 |" in md
    assert "| replicates |" in md
    n = int(table.query("protocol == 'same_perturbagen' and group == 'all'")["n_queries"].max())
    assert f"| {n:,} / " in md  # queries and positives beside each figure


def test_ncs_method_on_request():
    held = _heldout(n_perts=12, reps=4)
    runs = run_protocols(
        held, None, EvaluationConfig(protocols=["same_perturbagen", "moa"], methods=["ncs"])
    )
    assert [(r.protocol, r.method) for r in runs] == [("same_perturbagen", "ncs"), ("moa", "ncs")]
    assert runs[0].result.summary()["auc"] > 0.9


def test_drug_level_embedding_uses_renormalized_means():
    held = _heldout(n_perts=10, reps=3)
    emb = np.random.default_rng(1).normal(size=(len(held.meta), 8)).astype(np.float32)
    runs = run_protocols(held, emb, EvaluationConfig(protocols=["moa"], methods=["embedding"]))
    compounds = (held.meta["pert_type"] == "trt_cp").to_numpy()
    ids, means = perturbagen_means(
        emb[compounds], held.meta["pert_id"].to_numpy()[compounds], normalize=True
    )
    labels = np.array([f"moa{int(i[1:]) % 5}" for i in ids])
    direct = retrieval(means, labels, means, labels, self_index=np.arange(len(ids)))
    np.testing.assert_allclose(runs[0].result.quantiles, direct.quantiles)


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="unknown protocol"):
        run_protocols(_heldout(n_perts=3), None, EvaluationConfig(protocols=["bogus"]))


def test_direct_training_ranks_every_compound_from_streamed_means(small_lake):
    import pyarrow.parquet as pq

    from l1000_assets.core.lake.read import landmark_matrix

    tables = [pq.read_table(f, columns=["pert_id", "pert_type", "landmarks"]) for f in small_lake]
    perts = np.concatenate([t.column("pert_id").to_numpy(zero_copy_only=False) for t in tables])
    types = np.concatenate([t.column("pert_type").to_numpy(zero_copy_only=False) for t in tables])
    x = np.concatenate([landmark_matrix(t) for t in tables])
    projection = np.random.default_rng(0).normal(size=(978, 8)).astype(np.float32)
    means = load_perturbagen_means(small_lake, set(perts), lambda v: v @ projection, batch_size=100)
    ids, direct = perturbagen_means(x, perts, normalize=False)
    np.testing.assert_array_equal(means.ids, ids)
    np.testing.assert_allclose(means.vectors["zscore"], direct, rtol=1e-4, atol=1e-5)
    _, emb = perturbagen_means(x @ projection, perts, normalize=True)
    np.testing.assert_allclose(means.vectors["embedding"], emb, atol=1e-5)
    info = pd.DataFrame(
        {
            "pert_id": ids,
            "pert_type": [types[perts == p][0] for p in ids],
            "moa": [f"m{i % 4}" for i in range(len(ids))],
            "target": [f"t{i % 3}" for i in range(len(ids))],
        }
    )
    config = EvaluationConfig(
        protocols=["moa_direct", "target_direct"], methods=["embedding", "zscore_cosine"]
    )
    runs = run_direct(means, info, config)
    assert {(r.protocol, r.method) for r in runs} == {
        (p, m) for p in ("moa_direct", "target_direct") for m in ("embedding", "zscore_cosine")
    }
    n_compounds = int((info["pert_type"] == "trt_cp").sum())
    assert 0 < n_compounds < len(ids)  # the release has genetic perturbagens too
    assert all(r.result.n_queries == n_compounds for r in runs)
    with pytest.raises(ValueError, match="unknown protocol"):
        run_direct(means, info, EvaluationConfig(protocols=["same_perturbagen"]))
