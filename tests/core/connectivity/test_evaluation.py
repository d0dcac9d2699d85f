"""The gene-set protocol on the small synthetic release: every method on the same queries,
quantiles by the paper's rule, summaries in the evaluation's metric names."""

import numpy as np
import pandas as pd
import pytest

from l1000_assets.core.connectivity.evaluation import geneset_protocol, summary_table
from l1000_assets.core.connectivity.scoring import landmark_profile
from l1000_assets.core.embeddings.vectors import normalize_rows
from l1000_assets.core.evaluation.metrics import SUMMARY_METRICS, rank_quantiles


def heldout(store, fraction=0.4, seed=0):
    perts = np.sort(store.index["pert_id"].astype(str).unique())
    rng = np.random.default_rng(seed)
    return set(rng.choice(perts, int(len(perts) * fraction), replace=False))


def test_every_method_on_the_same_queries(small_store, small_reference):
    store, _ = small_store
    reference, _ = small_reference
    genes = store.genes["gene_id"].astype(str).tolist()
    gene_order = genes[:978]
    projection = np.random.default_rng(1).standard_normal((978, 16)).astype(np.float32)
    signature_vectors = normalize_rows(
        store.read_z(np.arange(len(store)), np.arange(978)) @ projection
    )

    def embed(x):  # any embedding function: here a fixed linear map onto the sphere
        return normalize_rows(x @ projection)

    held = heldout(store)
    runs = geneset_protocol(
        store,
        held,
        reference=reference,
        max_queries=60,
        embed=embed,
        gene_order=gene_order,
        signature_vectors=signature_vectors,
    )
    assert [r.method for r in runs] == ["wtcs", "ncs", "tau", "mwu", "embedding"]
    n_queries = {r.result.n_queries for r in runs}
    assert n_queries == {60}
    positives = {len(r.result.quantiles) for r in runs}
    assert len(positives) == 1  # the same positives for every method
    for run in runs:
        q = run.result.quantiles
        assert ((q >= 0) & (q <= 1)).all()
        assert set(run.query_clusters) <= held
    table = summary_table(runs)
    assert set(SUMMARY_METRICS) | {"mcc"} == set(table["metric"])
    auc = table[(table["metric"] == "auc") & (table["group"] == "all")].set_index("method")["value"]
    assert auc["wtcs"] > 0.7 and auc["tau"] > 0.7 and auc["mwu"] > 0.7  # well above chance
    mcc = table[table["metric"] == "mcc"].set_index("method")["value"]
    assert mcc["wtcs"] > 0.2


def test_quantiles_follow_the_papers_rule(small_store):
    """Recompute one query's quantiles for WTCS from its own scores by the rule
    q = (#negatives above + 0.5 #tied) / #negatives."""
    from l1000_assets.core.connectivity.reference import signature_sets
    from l1000_assets.core.connectivity.scoring import query_wtcs

    store, _ = small_store
    held = heldout(store, seed=3)
    (run,) = geneset_protocol(store, held, methods=["wtcs"], max_queries=5, seed=2)
    pert = store.index["pert_id"].astype(str).to_numpy()
    cand = np.flatnonzero(np.isin(pert, sorted(held)))
    counts = pd.Series(pert[cand]).value_counts()
    eligible = cand[counts.reindex(pert[cand]).to_numpy() > 1]
    query = np.sort(np.random.default_rng(2).choice(eligible, 5, replace=False))[0]
    up, down = signature_sets(store, [query], 100)
    s = query_wtcs(store, up, down, cand)[0][0].astype(np.float64)
    same = pert[cand] == pert[query]
    positive = same & (cand != query)
    expected = []
    for p in s[positive]:
        negatives = s[~same]
        expected.append(((negatives > p).sum() + 0.5 * (negatives == p).sum()) / len(negatives))
    got = run.result.quantiles[run.result.query_index == 0]
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(got, rank_quantiles(s[None], positive[None], ~same[None]))


def test_landmark_profile(small_store):
    store, _ = small_store
    order = store.genes["gene_id"].astype(str).tolist()[:978][::-1]
    profile = landmark_profile(store, np.array([0, 2000]), np.array([5]), order)
    size = store.landmark_norm / np.sqrt(2)  # two landmark genes, at a typical norm
    assert profile[977] == pytest.approx(size) and profile[972] == pytest.approx(-size)
    assert np.count_nonzero(profile) == 2
    assert np.linalg.norm(profile) == pytest.approx(store.landmark_norm, rel=1e-6)
    norms = np.linalg.norm(store.read_z(np.arange(len(store)), store.landmark_rows), axis=1)
    assert store.landmark_norm == pytest.approx(np.median(norms), rel=1e-3)
