"""Tanimoto and the paper's combo as drug-level methods of the evaluation's registry: ranks
against their definition (ties half), the same queries as the other methods, each pair's
Tanimoto, and the breakdown of drug-level retrieval by pair Tanimoto."""

import numpy as np
import pandas as pd
import pytest

from l1000_assets.core.embeddings.vectors import normalize_rows
from l1000_assets.core.evaluation.metrics import summarize_quantiles
from l1000_assets.core.evaluation.protocols import (
    METHOD_SPECS,
    EvaluationConfig,
    Fingerprints,
    PerturbagenMeans,
    positive_pairs,
    run_direct,
    run_protocols,
)
from l1000_assets.core.evaluation.report import (
    breakdown_markdown,
    metrics_table,
    ranks_table,
    structure_breakdown,
    table1_markdown,
)
from l1000_assets.core.evaluation.retrieval import FINGERPRINT_BITS, retrieval
from l1000_assets.core.structure.tanimoto import pair_tanimoto, tanimoto

from .test_protocols import _heldout


def _packed(n, seed=0, density=0.02):
    bits = np.random.default_rng(seed).random((n, FINGERPRINT_BITS)) < density
    return np.packbits(bits, axis=1)


def _by_definition(sim, labels):
    """(query, positive, q) one pair at a time: q = (#neg > s + 0.5 #neg == s) / #neg."""
    out = []
    n = len(labels)
    for i in range(n):
        pos = [j for j in range(n) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(n) if labels[j] != labels[i]]
        if not neg:
            continue
        for j in pos:
            s = sim[i, j]
            greater = sum(sim[i, k] > s for k in neg)
            equal = sum(sim[i, k] == s for k in neg)
            out.append((i, j, (greater + 0.5 * equal) / len(neg)))
    return out


@pytest.mark.parametrize("metric", ["tanimoto", "combo"])
def test_structure_metrics_rank_as_their_definition(metric):
    n = 40
    rng = np.random.default_rng(3)
    packed = _packed(n, density=0.01)  # sparse: many exact ties, Tanimoto 0 among them
    packed[5] = 0  # a compound without a fingerprint: Tanimoto 0 with every other
    bits = np.unpackbits(packed, axis=1).astype(np.float32)
    emb = normalize_rows(rng.normal(size=(n, 6)).astype(np.float32))
    labels = np.array([f"m{i % 6}" for i in range(n)])
    tani = tanimoto(packed, packed)
    if metric == "tanimoto":
        vectors, sim = bits, tani
    else:
        vectors = np.concatenate([emb, bits], axis=1)
        sim = (0.5 * (emb @ emb.T + tani)).astype(np.float32)
    result = retrieval(
        vectors, labels, vectors, labels, metric=metric, self_index=np.arange(n), block_size=7
    )
    expected = _by_definition(sim, labels)
    assert len(result.quantiles) == len(expected)
    pairs = positive_pairs(result, labels, np.arange(n))
    got = sorted(zip(result.query_index, pairs, result.quantiles))
    for (i, j, q), (gi, gj, gq) in zip(sorted(expected), got):
        assert (i, j) == (gi, gj)
        assert gq == pytest.approx(q, abs=1e-9 if metric == "tanimoto" else 0.03)
    if metric == "tanimoto":  # the positives' scores are the pairs' Tanimoto, exactly
        np.testing.assert_array_equal(
            result.positive_scores, pair_tanimoto(packed, result.query_index, pairs)
        )
    with pytest.raises(ValueError, match="columns"):
        retrieval(emb, labels, emb, labels, metric=metric)


def test_structure_methods_are_drug_level_only_on_the_same_queries():
    held = _heldout(n_perts=24, reps=3)
    emb = np.random.default_rng(1).normal(size=(len(held.meta), 8)).astype(np.float32)
    ids = np.array(sorted(held.meta["pert_id"].unique()))
    known = ids[ids != "P001"]  # a compound without a fingerprint
    fingerprints = Fingerprints(known, _packed(len(known), seed=2))
    config = EvaluationConfig(
        protocols=["same_perturbagen", "moa"],
        methods=["embedding", "zscore_cosine", "tanimoto", "combo"],
    )
    messages = []
    runs = run_protocols(held, emb, config, log=messages.append, fingerprints=fingerprints)
    got = {(r.protocol, r.method) for r in runs}
    assert got == {
        ("same_perturbagen", "embedding"),
        ("same_perturbagen", "zscore_cosine"),
        *(("moa", m) for m in ("embedding", "zscore_cosine", "tanimoto", "combo")),
    }
    moa = {r.method: r for r in runs if r.protocol == "moa"}
    for run in moa.values():  # every method: the same queries, the same positive pairs
        np.testing.assert_array_equal(run.result.query_index, moa["embedding"].result.query_index)
        np.testing.assert_array_equal(run.pair_tanimoto, moa["tanimoto"].result.positive_scores)
    assert any("without a fingerprint" in m for m in messages)
    # Without fingerprints the structure methods are skipped, the others unchanged.
    plain = run_protocols(held, emb, config)
    assert {(r.protocol, r.method) for r in plain} == got - {("moa", "tanimoto"), ("moa", "combo")}
    assert all(r.pair_tanimoto is None for r in plain)
    assert METHOD_SPECS["combo"].drug_level_only and not METHOD_SPECS["embedding"].drug_level_only


def test_direct_training_has_tanimoto_and_combo():
    ids = np.array([f"C{i:02d}" for i in range(20)] + ["G00"])
    rng = np.random.default_rng(0)
    means = PerturbagenMeans(
        ids,
        {
            "zscore": rng.normal(size=(21, 978)).astype(np.float32),
            "embedding": normalize_rows(rng.normal(size=(21, 8)).astype(np.float32)),
        },
        np.full(21, 3),
    )
    info = pd.DataFrame(
        {
            "pert_id": ids,
            "pert_type": ["trt_cp"] * 20 + ["trt_sh"],
            "moa": [f"m{i % 4}" for i in range(21)],
            "target": [f"t{i % 3}" for i in range(21)],
        }
    )
    packed = _packed(21, seed=5, density=0.05)
    config = EvaluationConfig(protocols=["moa_direct"], methods=["embedding", "tanimoto", "combo"])
    runs = run_direct(means, info, config, fingerprints=Fingerprints(ids, packed))
    assert [r.method for r in runs] == ["embedding", "tanimoto", "combo"]
    assert all(r.result.n_queries == 20 for r in runs)  # compounds only
    tani = next(r for r in runs if r.method == "tanimoto")
    labels = info["moa"].to_numpy()[:20]
    pairs = positive_pairs(tani.result, labels, np.arange(20))
    np.testing.assert_array_equal(
        tani.pair_tanimoto, pair_tanimoto(packed[:20], tani.result.query_index, pairs)
    )


def test_breakdown_by_pair_tanimoto_bins_each_positive_once():
    held = _heldout(n_perts=30, reps=2)
    ids = np.array(sorted(held.meta["pert_id"].unique()))
    # Dense fingerprints: pair Tanimoto spread over the bins.
    rng = np.random.default_rng(4)
    base = rng.random((4, FINGERPRINT_BITS)) < 0.1
    noise = rng.random((len(ids), FINGERPRINT_BITS)) < 0.08
    bits = base[np.arange(len(ids)) % 4] ^ noise
    fingerprints = Fingerprints(ids, np.packbits(bits, axis=1))
    emb = rng.normal(size=(len(held.meta), 8)).astype(np.float32)
    config = EvaluationConfig(protocols=["moa", "target"], methods=["embedding", "tanimoto"])
    runs = run_protocols(held, emb, config, fingerprints=fingerprints)
    ranks = ranks_table(runs, "split_0")
    breakdown = structure_breakdown(ranks)
    auc = breakdown[breakdown["metric"] == "auc"]
    for (protocol, method), g in auc.groupby(["protocol", "method"]):
        sub = ranks[(ranks["protocol"] == protocol) & (ranks["method"] == method)]
        assert g["n_positives"].sum() == len(sub)  # every positive in exactly one bin
        pair = sub["pair_tanimoto"].to_numpy()
        low = sub["quantile"].to_numpy()[pair < 0.2]
        row = g[g["tanimoto_bin"] == "[0, 0.2)"].iloc[0]
        assert row["n_positives"] == len(low)
        if len(low):
            assert row["value"] == pytest.approx(summarize_quantiles(low)["auc"])
    assert set(auc["tanimoto_bin"]) == {"[0, 0.2)", "[0.2, 0.4)", "[0.4, 1]"}
    md = breakdown_markdown(breakdown)
    assert "| moa | [0, 0.2) |" in md and "tanimoto" in md
    # The tidy table and the Table-1 summary carry the structure methods with their counts.
    table, _ = metrics_table(ranks, n_boot=0)
    assert {"tanimoto", "embedding"} <= set(table["method"])
    assert "tanimoto" in table1_markdown(table)
    # Profile-level ranks have no pair Tanimoto: no breakdown rows.
    profile = run_protocols(
        held, emb, EvaluationConfig(protocols=["same_perturbagen"], methods=["embedding"])
    )
    assert structure_breakdown(ranks_table(profile, "split_0")).empty
