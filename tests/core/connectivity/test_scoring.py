"""WTCS, NCS, tau, the rank test and the summaries, against direct implementations of the
published formulas (CMap: Subramanian et al. 2017; SigCom LINCS: Evangelista et al. 2022)."""

import numpy as np
import pytest
from scipy.stats import false_discovery_control, mannwhitneyu

from l1000_assets.core.connectivity.kernels import es_from_hits
from l1000_assets.core.connectivity.scoring import (
    TAU_LEVELS,
    Levels,
    enrichment,
    maxq,
    normalized,
    query_wtcs,
    rank_sums,
    rank_test,
    rank_test_distance,
    rank_test_fdr,
    tau_scores,
)
from l1000_assets.core.connectivity.store import segments_of
from l1000_assets.core.evaluation.connectivity import tau as exact_tau
from tests.core.connectivity.conftest import make_store, tiny_genes, tiny_index


# ---------------------------------------------------------------- the formulas, directly
def direct_es(z: np.ndarray, genes: np.ndarray) -> float:
    """CMap's ES, walked over every gene: genes ranked by descending z (ties: ascending
    index); a hit adds |z_g| / sum |z| over the set (equal shares when that sum is 0), a
    miss subtracts 1 / (N - G); the deviation from 0 of largest size (the negative one when
    both are as large)."""
    n, g = len(z), len(genes)
    order = sorted(range(n), key=lambda i: (-float(z[i]), i))
    in_set = set(int(x) for x in genes)
    total = sum(abs(float(z[i])) for i in in_set)
    running, hi, lo = 0.0, 0.0, 0.0
    for i in order:
        if i in in_set:
            running += abs(float(z[i])) / total if total > 0 else 1.0 / g
        else:
            running -= 1.0 / (n - g)
        hi, lo = max(hi, running), min(lo, running)
    return hi if hi > -lo + 1e-9 else lo


def direct_wtcs(z, up, down) -> float:
    """WTCS = (ES_up - ES_down) / 2 when the signs differ, else 0; one set: its ES
    (the down set's negated)."""
    if len(down) == 0:
        return direct_es(z, up)
    if len(up) == 0:
        return -direct_es(z, down)
    a, b = direct_es(z, up), direct_es(z, down)
    return (a - b) / 2 if a * b < 0 else 0.0


def direct_ncs(wtcs_row: np.ndarray, groups: np.ndarray) -> np.ndarray:
    out = np.full(len(wtcs_row), np.nan)
    for g in np.unique(groups):
        sel = groups == g
        v = wtcs_row[sel]
        pos, neg = v[v > 0], v[v < 0]
        out[sel] = np.where(
            v > 0,
            v / (pos.mean() if len(pos) else np.nan),
            np.where(v < 0, v / (-neg.mean() if len(neg) else np.nan), 0.0),
        )
    return out


def direct_maxq(values: np.ndarray) -> float:
    v = values[~np.isnan(values)]
    if not len(v):
        return np.nan
    lo, hi = np.quantile(v, 0.33), np.quantile(v, 0.67)
    return hi if abs(hi) >= abs(lo) else lo


# -------------------------------------------------------------------------------- tests
def random_sets(rng, n, sizes):
    return [np.sort(rng.choice(n, s, replace=False)).astype(np.int64) for s in sizes]


def test_the_store_sorts_its_columns_a_few_rows_at_a_time(tiny, tmp_path, monkeypatch):
    """Columns sorted by perturbagen, cell line and signature, rows permuted in place in
    blocks of 3 rows: every column still holds its own signature."""
    from l1000_assets.core.connectivity import store as store_module

    store, z = tiny
    keys = store.index[["pert_id", "cell_id", "sig_id"]]
    assert keys.equals(keys.sort_values(list(keys.columns)).reset_index(drop=True))
    np.testing.assert_array_equal(np.asarray(store.zscores, np.float32).T, z)
    monkeypatch.setattr(store_module, "_SORT_BLOCK_BYTES", 3 * len(store) * 2)
    rng = np.random.default_rng(5)
    z0 = rng.standard_normal((60, 300)).astype(np.float16).astype(np.float32)
    z0[:, :20] = np.round(z0[:, :20])
    z0[3] = 0.0
    again = make_store(tmp_path / "again", z0, tiny_index(60, rng), tiny_genes(300))
    assert np.array_equal(again.ranks, store.ranks) and again.index.equals(store.index)
    assert again.version == store.version


def test_es_matches_the_direct_walk(tiny):
    store, z = tiny
    rng = np.random.default_rng(0)
    sets = random_sets(rng, store.n_genes, [1, 5, 20, 150, 299])
    sets.append(np.arange(0, 20))  # only tied genes
    cols = np.arange(len(store))
    es = enrichment(store, sets, cols)
    for s, genes in enumerate(sets):
        for c in cols:
            assert es[s, c] == pytest.approx(direct_es(z[c], genes), abs=1e-6)


def test_es_from_hits_is_the_same_walk(tiny):
    store, z = tiny
    rng = np.random.default_rng(1)
    genes = random_sets(rng, store.n_genes, [40])[0]
    positions = np.asarray(store.ranks[genes]).T.astype(np.int64)  # (signatures, G)
    order = np.argsort(positions, axis=1)
    weights = np.abs(z[:, genes])
    es = es_from_hits(
        np.take_along_axis(positions, order, 1), np.take_along_axis(weights, order, 1), 300
    )
    np.testing.assert_allclose(es, [direct_es(z[c], genes) for c in range(len(z))], atol=1e-6)


def test_wtcs_matches_the_formula_and_is_zero_for_same_signs(tiny):
    store, z = tiny
    rng = np.random.default_rng(2)
    ups = random_sets(rng, store.n_genes, [10, 30, 50, 25])
    downs = random_sets(rng, store.n_genes, [12, 30, 50, 0])  # the last: up set only
    ups.append(np.empty(0, np.int64))  # a down set only
    downs.append(random_sets(rng, store.n_genes, [15])[0])
    cols = np.arange(len(store))
    wtcs, es_up, es_down = query_wtcs(store, ups, downs, cols)
    same_sign = 0
    for q in range(len(ups)):
        for c in cols:
            assert wtcs[q, c] == pytest.approx(direct_wtcs(z[c], ups[q], downs[q]), abs=1e-6)
            if len(ups[q]) and len(downs[q]) and es_up[q, c] * es_down[q, c] > 0:
                assert wtcs[q, c] == 0.0
                same_sign += 1
    assert same_sign > 0  # the same-sign case did occur
    assert np.all(np.abs(wtcs) <= 1)


def test_wtcs_is_zero_when_both_sets_sit_at_the_top(tiny):
    store, z = tiny
    c = 7
    top = np.argsort(-z[c], kind="stable")
    up, down = top[:10].astype(np.int64), top[10:20].astype(np.int64)  # both enriched at the top
    wtcs, es_up, es_down = query_wtcs(store, [up], [down], np.array([c]))
    assert es_up[0, 0] > 0 and es_down[0, 0] > 0
    assert wtcs[0, 0] == 0.0


def test_ncs_matches_the_formula(tiny):
    store, z = tiny
    rng = np.random.default_rng(3)
    ups = random_sets(rng, store.n_genes, [20, 20, 20])
    downs = random_sets(rng, store.n_genes, [20, 20, 20])
    cols = np.arange(len(store))
    wtcs, _, _ = query_wtcs(store, ups, downs, cols)
    ncs = normalized(wtcs, store.group_codes)
    for q in range(3):
        np.testing.assert_allclose(
            ncs[q], direct_ncs(wtcs[q].astype(float), store.group_labels), rtol=1e-5
        )


def test_tau_from_quantiles_matches_the_exact_percentile():
    rng = np.random.default_rng(4)
    n_ref, n_sig = 400, 30
    reference = rng.standard_normal((n_ref, n_sig)) * rng.uniform(0.5, 2, n_sig)
    reference[rng.random(reference.shape) < 0.3] = 0.0  # WTCS 0 is common: plateaus
    quantiles = np.quantile(np.abs(reference), TAU_LEVELS / 100, axis=0).T
    ncs = rng.standard_normal((5, n_sig)) * 2
    ncs[0, :3] = [0.0, 1e6, -1e6]
    tau = tau_scores(ncs, quantiles)
    assert np.all((tau >= -100) & (tau <= 100))
    assert tau[0, 0] == 0 and tau[0, 1] == 100 and tau[0, 2] == -100
    for s in range(n_sig):
        exact = exact_tau(ncs[:, s], reference[:, s])
        # One percentile of interpolation between the stored quantiles, and one reference
        # value, at most.
        np.testing.assert_allclose(tau[:, s], exact, atol=1.0 + 100 / n_ref)
        assert np.array_equal(np.sign(tau[:, s]), np.sign(ncs[:, s]))


def test_tau_is_nan_without_reference_values():
    quantiles = np.full((2, len(TAU_LEVELS)), np.nan)
    tau = tau_scores(np.array([[0.5, np.nan]]), quantiles)
    assert np.isnan(tau).all()


def test_rank_test_matches_mann_whitney(tiny):
    store, z = tiny
    rng = np.random.default_rng(6)
    sets = random_sets(rng, store.n_genes, [10, 60])
    sets.append(np.empty(0, np.int64))
    cols = np.arange(len(store))
    zs, ps = rank_test(store, sets, cols)
    assert np.isnan(zs[2]).all()
    ranks = np.asarray(store.ranks)
    for s in range(2):
        for c in cols:
            score = -ranks[:, c].astype(float)  # higher = higher z (ranks are a permutation)
            inside = np.isin(np.arange(store.n_genes), sets[s])
            test = mannwhitneyu(
                score[inside], score[~inside], method="asymptotic", use_continuity=False
            )
            assert ps[s, c] == pytest.approx(test.pvalue, rel=1e-9)
            u = test.statistic
            g, n = inside.sum(), store.n_genes
            assert zs[s, c] == pytest.approx(
                (u - g * (n - g) / 2) / np.sqrt(g * (n - g) * (n + 1) / 12), rel=1e-9
            )


def test_rank_test_fdr_from_the_histogram_is_scipys_bh(tiny):
    """The FDRs looked up from the distance histogram are scipy's BH of every signature's
    p-value, ties included (a set of 3 genes has few distinct sums)."""
    store, _ = tiny
    rng = np.random.default_rng(8)
    cols = np.arange(len(store))
    for g in (3, 10, 60):
        genes = rng.choice(store.n_genes, g, replace=False).astype(np.int64)
        _, p = rank_test(store, [genes], cols)
        d = rank_test_distance(rank_sums(store, [genes], cols)[0], g, store.n_genes)
        assert len(np.unique(d % 2)) == 1  # fixed parity: d // 2 is a bin
        counts = np.bincount(d // 2, minlength=g * (store.n_genes - g) // 2 + 1)
        fdr = rank_test_fdr(counts, g, store.n_genes, d // 2)
        np.testing.assert_allclose(fdr, false_discovery_control(p[0]), rtol=1e-9)
    with pytest.raises(ValueError, match="holds no signature"):
        rank_test_fdr(np.array([0, 2, 0]), 3, store.n_genes, np.array([2]))


def test_rank_test_sign_follows_the_set(tiny):
    store, z = tiny
    c = 11
    order = np.argsort(-z[c], kind="stable").astype(np.int64)
    zs, _ = rank_test(store, [order[:30], order[-30:]], np.array([c]))
    assert zs[0, 0] > 5 and zs[1, 0] < -5


def test_maxq_matches_numpy_quantiles():
    rng = np.random.default_rng(7)
    values = rng.standard_normal((4, 50))
    values[0, 5] = np.nan
    values[1, :] = np.nan
    codes = rng.integers(0, 12, 50)
    codes[:3] = 99  # a segment of three
    uniques, segments = segments_of(codes)
    out = maxq(values, segments)
    for r in range(4):
        for s, code in enumerate(uniques):
            expected = direct_maxq(values[r, codes == code])
            if np.isnan(expected):
                assert np.isnan(out[r, s])
            else:
                assert out[r, s] == pytest.approx(expected)


def test_levels_group_signatures_by_perturbagen_and_cell(tiny):
    store, _ = tiny
    cols = store.columns(cell="MCF7")
    levels = Levels.of(store, cols)
    index = store.index.iloc[cols]
    assert len(levels.pert_cells) == index.groupby(["pert_id", "cell_id"]).ngroups
    assert len(levels.perts) == index["pert_id"].nunique()
    for s in range(len(levels.cell_segments)):
        members = cols[
            levels.cell_segments.order[
                levels.cell_segments.offsets[s] : levels.cell_segments.offsets[s + 1]
            ]
        ]
        assert store.index["pert_id"].iloc[members].nunique() == 1
