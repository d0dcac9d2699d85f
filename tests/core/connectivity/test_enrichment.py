"""Statistics on the hits against direct implementations of the formulas: the
hypergeometric tail with Benjamini-Hochberg, and GSEA's preranked ES, NES, p and FDR."""

from math import comb

import numpy as np
import pandas as pd
import pytest

from l1000_assets.core.connectivity.enrichment import (
    gsea_fdr,
    prerank,
    term_members,
    top_enrichment,
)


@pytest.fixture
def ranked():
    """60 perturbagens ranked best first: MOA 'alpha' gathers at the top, 'omega' at the
    bottom, 'mixed' anywhere; targets with '|'-separated values."""
    rng = np.random.default_rng(0)
    n = 60
    ids = [f"P{i:02d}" for i in range(n)]
    moa = np.array(["mixed"] * n, dtype=object)
    moa[[0, 1, 2, 4, 7, 9]] = "alpha"
    moa[[50, 53, 55, 57, 58, 59]] = "omega"
    moa[rng.choice(np.arange(10, 50), 20, replace=False)] = None
    target = np.array([f"T{i % 4}|T{(i + 1) % 4}" for i in range(n)], dtype=object)
    target[5] = "-666"
    annotations = pd.DataFrame({"pert_id": ids, "moa": moa, "target": target})
    scores = np.sort(rng.standard_normal(n) * 2)[::-1].copy()
    return ids, [f"name-{i}" for i in ids], scores, annotations


def direct_sf(x, total, members, draws):
    return sum(
        comb(members, i) * comb(total - members, draws - i)
        for i in range(x, min(members, draws) + 1)
    ) / comb(total, draws)


def direct_bh(p):
    p = np.asarray(p, float)
    order = np.argsort(p)
    adjusted = p[order] * len(p) / np.arange(1, len(p) + 1)
    adjusted = np.minimum.accumulate(adjusted[::-1])[::-1]
    out = np.empty(len(p))
    out[order] = np.minimum(adjusted, 1)
    return out


def test_term_members_split_and_skip_unknowns(ranked):
    ids, _, _, annotations = ranked
    members = term_members(ids, annotations)
    assert members[("moa", "alpha")].tolist() == [0, 1, 2, 4, 7, 9]
    assert 5 not in members[("target", "T1")] and 4 in members[("target", "T1")]
    assert ("target", "-666") not in members and ("moa", "None") not in members


def test_top_n_matches_the_hypergeometric_formula_and_bh(ranked):
    ids, names, _, annotations = ranked
    table = top_enrichment(ids, names, annotations, top=10)
    alpha = table.set_index("term").loc["alpha"]
    assert alpha["n_hits_term"] == 6 and alpha["n_term"] == 6 and alpha["n_background"] == 60
    assert alpha["hits"] == [names[i] for i in (0, 1, 2, 4, 7, 9)]
    assert alpha["fold_enrichment"] == pytest.approx((6 / 10) / (6 / 60))
    members = term_members(ids, annotations)
    for _, row in table.iterrows():
        m = len(members[(row["term_kind"], row["term"])])
        assert row["p_value"] == pytest.approx(direct_sf(row["n_hits_term"], 60, m, 10))
    for _, part in table.groupby("term_kind"):
        np.testing.assert_allclose(part["fdr"], direct_bh(part["p_value"]))
    assert table["p_value"].is_monotonic_increasing
    assert "omega" not in set(table["term"])  # no hit carries it: not tested
    # The head of the list and the background: the same table (what a query keeps).
    head = top_enrichment(ids[:12], names[:12], annotations, top=10, background=ids[::-1])
    pd.testing.assert_frame_equal(head, table)


def direct_es(scores, members, weight=1.0):
    """GSEA's ES walked over every position of the list."""
    n, g = len(scores), len(members)
    hit = np.zeros(n, bool)
    hit[members] = True
    w = np.abs(scores) ** weight
    total = w[hit].sum()
    running, hi, lo = 0.0, 0.0, 0.0
    for i in range(n):
        running += w[i] / total if hit[i] else -1 / (n - g)
        hi, lo = max(hi, running), min(lo, running)
    return hi if hi > -lo + 1e-9 else lo


def direct_prerank(ids, scores, annotations, permutations, seed, min_size, block=100):
    """The preranked test, term by term and permutation by permutation, with the same
    random orders (one per permutation, drawn a block at a time)."""
    n = len(ids)
    terms = [
        (key, m) for key, m in term_members(ids, annotations).items() if min_size <= len(m) <= n - 1
    ]
    rng = np.random.default_rng(seed)
    orders = np.concatenate(
        [
            np.argsort(rng.random((min(block, permutations - p0), n)), axis=1)
            for p0 in range(0, permutations, block)
        ]
    )
    out = {}
    for key, m in terms:
        es = direct_es(scores, m)
        null = np.array([direct_es(scores, np.sort(o[: len(m)])) for o in orders])
        pos, neg = null[null >= 0], null[null < 0]
        nes = es / pos.mean() if es >= 0 else es / -neg.mean()
        p = (pos >= es).mean() if es >= 0 else (neg <= es).mean()
        null_nes = np.where(null >= 0, null / pos.mean(), null / -neg.mean())
        out[key] = (es, nes, p, null_nes)
    return out


def direct_fdr(nes, null_nes):
    out = []
    null = np.concatenate(null_nes)
    for x in nes:
        if x >= 0:
            a = (null >= x).sum() / (null >= 0).sum()
            b = (np.asarray(nes) >= x).sum() / (np.asarray(nes) >= 0).sum()
        else:
            a = (null <= x).sum() / (null < 0).sum()
            b = (np.asarray(nes) <= x).sum() / (np.asarray(nes) < 0).sum()
        out.append(min(1.0, a / b))
    return np.array(out)


def test_prerank_matches_the_direct_gsea(ranked):
    ids, names, scores, annotations = ranked
    table = prerank(ids, names, scores, annotations, permutations=150, seed=3, min_size=5)
    expected = direct_prerank(ids, scores, annotations, 150, 3, 5)
    assert len(table) == len(expected)
    got = table.set_index(["term_kind", "term"])
    for key, (es, nes, p, _) in expected.items():
        row = got.loc[key]
        assert row["es"] == pytest.approx(es, abs=1e-9)
        assert row["nes"] == pytest.approx(nes, rel=1e-9)
        assert row["p_value"] == pytest.approx(p)
    keys = list(expected)
    fdr = direct_fdr([expected[k][1] for k in keys], [expected[k][3] for k in keys])
    np.testing.assert_allclose([got.loc[k]["fdr"] for k in keys], fdr, rtol=1e-9)
    alpha, omega = got.loc[("moa", "alpha")], got.loc[("moa", "omega")]
    assert alpha["es"] > 0 and alpha["p_value"] < 0.05 and alpha["hits"][0] == names[0]
    assert omega["es"] < 0 and omega["p_value"] < 0.05 and omega["hits"][-1] == names[59]


def test_gsea_fdr_by_hand():
    nes = np.array([2.0, 1.0, -1.5])
    null = np.array([[0.5, 2.5, -1.0, -2.0], [1.5, 0.2, -0.5, -1.6]])
    # 2.0: null >= 2.0 is 1 of the 4 non-negative; observed >= 2.0 is 1 of 2: 0.25 / 0.5.
    # 1.0: 2 of 4 / 2 of 2. -1.5: null <= -1.5 is 2 of 4 negative; observed 1 of 1.
    np.testing.assert_allclose(gsea_fdr(nes, null), [0.5, 0.5, 0.5])
    # A second, stronger negative -2.5: no null NES below it (0); -1.5 now 2 of 4 / 2 of 2.
    np.testing.assert_allclose(gsea_fdr(np.r_[nes, -2.5], null), [0.5, 0.5, 0.5, 0.0])


def test_prerank_refuses_an_unsorted_list(ranked):
    ids, names, scores, annotations = ranked
    with pytest.raises(ValueError, match="descending"):
        prerank(ids, names, scores[::-1], annotations)
