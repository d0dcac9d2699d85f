"""Protocols and the tidy metrics table: worked by hand, intervals, the Table-1 layout."""

import math

import numpy as np
import pandas as pd
import pytest

from l1000_assets.core.evaluation.protocols import (
    EvaluationConfig,
    HeldOut,
    ProtocolRun,
    perturbagen_means,
    run_protocols,
)
from l1000_assets.core.evaluation.report import (
    metrics_table,
    recall_curves,
    table1_markdown,
)
from l1000_assets.core.evaluation.retrieval import RetrievalResult, mcc, retrieval


def _run(quantiles, owners, n_queries, clusters, confusion=(1, 1, 1, 1)):
    result = RetrievalResult(
        np.asarray(quantiles, float), np.asarray(owners), n_queries, confusion, 0.0
    )
    return ProtocolRun(
        "same_perturbagen",
        "embedding",
        result,
        {"all": np.ones(n_queries, bool), "small_molecules": np.arange(n_queries) < 2},
        np.asarray(clusters),
    )


def test_metrics_worked_by_hand():
    # Four positives of two queries: q = 0, 0.005, 0.05, 0.5.
    run = _run([0.0, 0.005, 0.05, 0.5], [0, 0, 1, 2], 3, ["a", "a", "b"], confusion=(3, 1, 4, 2))
    table = metrics_table([[run]], n_boot=0)
    v = table[table["group"] == "all"].set_index("metric")["value"]
    assert v["median_quantile"] == pytest.approx((0.005 + 0.05) / 2)
    assert v["recall_top_0.001"] == pytest.approx(0.25)
    assert v["recall_top_0.01"] == pytest.approx(0.5)
    assert v["recall_top_0.1"] == pytest.approx(0.75)
    assert v["auc"] == pytest.approx(1 - (0.0 + 0.005 + 0.05 + 0.5) / 4)
    # MCC of tp 3, fp 1, tn 4, fn 2: (12 - 2) / sqrt(4 * 5 * 5 * 6).
    assert v["mcc"] == pytest.approx(10 / math.sqrt(4 * 5 * 5 * 6))
    assert mcc(0, 0, 5, 5) == 0.0
    # Group small molecules: queries 0 and 1 only.
    sm = table[table["group"] == "small_molecules"].set_index("metric")["value"]
    assert sm["auc"] == pytest.approx(1 - (0.0 + 0.005 + 0.05) / 3)
    assert math.isnan(sm["mcc"])  # MCC counts are pooled over all queries only


def test_bootstrap_interval_brackets_the_value_and_is_seeded():
    rng = np.random.default_rng(0)
    owners = np.repeat(np.arange(40), 5)
    q = rng.uniform(0, 0.6, len(owners))
    run = _run(q, owners, 40, np.repeat([f"p{i}" for i in range(10)], 4))
    a = metrics_table([[run]], n_boot=300, seed=1)
    b = metrics_table([[run]], n_boot=300, seed=1)
    pd.testing.assert_frame_equal(a, b)
    auc = a[(a["group"] == "all") & (a["metric"] == "auc")].iloc[0]
    assert auc["ci_low"] < auc["value"] < auc["ci_high"]
    assert auc["ci_high"] - auc["ci_low"] < 0.2
    assert auc["ci_method"].startswith("bootstrap")


def test_several_splits_give_a_t_interval_of_the_split_values():
    runs = [[_run([x, x], [0, 1], 2, ["a", "b"])] for x in (0.1, 0.2, 0.3)]
    table = metrics_table(runs)
    auc = table[(table["group"] == "all") & (table["metric"] == "auc")].iloc[0]
    assert auc["value"] == pytest.approx(0.8)
    # mean 0.8, sd 0.1, t(0.975, 2) = 4.3027: half width 4.3027 * 0.1 / sqrt(3).
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert auc["ci_low"] == pytest.approx(0.8 - half)
    assert auc["ci_high"] == pytest.approx(0.8 + half)
    assert auc["n_splits"] == 3 and auc["ci_method"] == "t95 over 3 splits"


def test_perturbagen_means_and_recall_curve():
    x = np.array([[1, 0], [3, 0], [0, 2]], np.float32)
    ids, means = perturbagen_means(x, np.array(["b", "b", "a"]), normalize=False)
    assert list(ids) == ["a", "b"]
    np.testing.assert_allclose(means, [[0, 2], [2, 0]])
    _, unit = perturbagen_means(x, np.array(["b", "b", "a"]), normalize=True)
    np.testing.assert_allclose(unit, [[0, 1], [1, 0]])
    run = _run([0.0, 0.5], [0, 1], 2, ["a", "b"])
    curve = recall_curves([run]).set_index("quantile")["recall"]
    assert curve[0.0] == 0.5 and curve[1.0] == 1.0


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
    table = metrics_table([runs], n_boot=20)
    auc = table[(table["metric"] == "auc") & (table["group"] == "all")].set_index(
        ["protocol", "method"]
    )["value"]
    # Strong perturbagen signal: every method retrieves the same perturbagen well.
    for m in ("zscore_cosine", "zscore_euclidean", "wtcs"):
        assert auc[("same_perturbagen", m)] > 0.9
    wtcs = next(r for r in runs if r.protocol == "same_perturbagen" and r.method == "wtcs")
    assert wtcs.result.n_queries == 50
    # Drug level: one vector per annotated perturbagen; target leaves out the unannotated.
    target = next(r for r in runs if r.protocol == "target" and r.method == "zscore_cosine")
    assert target.result.n_queries == sum(1 for p in range(30) if p % 4)
    assert {"genetic", "small_molecules", "cell:A375", "cell:MCF7"} <= set(table["group"])
    md = table1_markdown(table)
    assert "| all | zscore_cosine | paper | 0.1700 |" in md
    assert "| replicates |" in md


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
    ids, means = perturbagen_means(emb, held.meta["pert_id"].to_numpy(), normalize=True)
    labels = np.array([f"moa{int(i[1:]) % 5}" for i in ids])
    direct = retrieval(means, labels, means, labels, self_index=np.arange(len(ids)))
    np.testing.assert_allclose(runs[0].result.quantiles, direct.quantiles)


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="unknown protocol"):
        run_protocols(_heldout(n_perts=3), None, EvaluationConfig(protocols=["bogus"]))
