"""Exact blocked retrieval against a direct computation; sampled mode; MCC."""

import numpy as np
import pytest

from l1000_assets.core.evaluation.metrics import same_label_quantiles
from l1000_assets.core.evaluation.retrieval import balanced_mcc, mcc, retrieval


def _data(n=300, d=6, labels=25, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, labels, n)
    x = rng.normal(size=(n, d)).astype(np.float32) + 0.8 * y[:, None] % 3
    if ties:
        # Unit vectors with components in {0, +-0.5, +-1}: every score is computed
        # exactly (no rounding, so no order of summation can split a tie) and many are
        # equal. (Scores that round differently in two BLAS kernels are not ties.)
        pool = []
        for _ in range(40):
            v = np.zeros(d, np.float32)
            if rng.random() < 0.3:
                v[rng.integers(d)] = rng.choice([-1.0, 1.0])
            else:
                v[rng.choice(d, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
            pool.append(v)
        pool = np.array(pool)
        x = pool[(y * 3 + rng.integers(0, 4, n)) % len(pool)]
    return x, y


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize(
    "block_size,candidate_block,n_bins", [(7, 5, 16), (64, 64, 4096), (300, 1000, 3), (33, 17, 1)]
)
def test_exact_equals_direct(metric, ties, block_size, candidate_block, n_bins):
    x, y = _data(ties=ties)
    result = retrieval(
        x,
        y,
        x,
        y,
        metric=metric,
        self_index=np.arange(len(x)),
        block_size=block_size,
        candidate_block=candidate_block,
        n_bins=n_bins,
    )
    direct = same_label_quantiles(x, y, metric=metric)
    np.testing.assert_allclose(np.sort(result.quantiles), np.sort(direct), atol=1e-12)
    assert result.summary()["auc"] == pytest.approx(1 - direct.mean())


def test_queries_outside_the_candidates():
    x, y = _data(n=200)
    q, qy = x[:40] + 0.01, y[:40]
    result = retrieval(q, qy, x, y, block_size=16)
    for i in range(3):
        s = (q[i] / np.linalg.norm(q[i])) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
        neg = s[y != qy[i]]
        expected = [((neg > p).sum() + 0.5 * (neg == p).sum()) / len(neg) for p in s[y == qy[i]]]
        np.testing.assert_allclose(
            np.sort(result.quantiles[result.query_index == i]), np.sort(expected)
        )


def test_sampled_mode_is_deterministic_and_close_to_exact():
    x, y = _data(n=2000, labels=40)
    kwargs = dict(self_index=np.arange(len(x)), mode="sampled", n_sampled=500, seed=3)
    a = retrieval(x, y, x, y, **kwargs)
    b = retrieval(x, y, x, y, **kwargs)
    np.testing.assert_array_equal(a.quantiles, b.quantiles)
    c = retrieval(x, y, x, y, **{**kwargs, "seed": 4})
    assert not np.array_equal(a.quantiles, c.quantiles)
    exact = retrieval(x, y, x, y, self_index=np.arange(len(x)))
    assert a.summary()["auc"] == pytest.approx(exact.summary()["auc"], abs=0.01)


@pytest.mark.parametrize("mode", ["exact", "sampled"])
def test_each_positive_is_paired_with_a_seeded_negative_of_its_query(mode):
    x, y = _data(n=150, labels=5)
    kwargs = dict(self_index=np.arange(len(x)), mode=mode, n_sampled=40, seed=2)
    result = retrieval(x, y, x, y, block_size=32, **kwargs)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn @ xn.T
    for i in (0, 7, 99):
        mine = result.query_index == i
        same = (y == y[i]) & (np.arange(len(x)) != i)
        np.testing.assert_allclose(
            np.sort(result.positive_scores[mine]), np.sort(s[i, same]), atol=1e-5
        )
        others = s[i, y != y[i]]  # each paired score is one of the query's negatives
        assert all(np.abs(others - v).min() < 1e-5 for v in result.negative_scores[mine])
    assert len(result.negative_scores) == len(result.quantiles)
    again = retrieval(x, y, x, y, block_size=150, n_threads=1, **kwargs)
    np.testing.assert_allclose(again.negative_scores, result.negative_scores, atol=1e-6)
    other_seed = retrieval(x, y, x, y, block_size=32, **{**kwargs, "seed": 3})
    assert not np.allclose(other_seed.negative_scores, result.negative_scores)
    assert result.mcc == pytest.approx(balanced_mcc(result.positive_scores, result.negative_scores))
    assert 0 < result.mcc < 1


def test_balanced_mcc_worked_by_hand():
    # Pooled scores 0.9 0.8 0.6 0.4 | 0.7 0.3 0.2 0.1: median 0.5; positives above: 3 of 4
    # (tp 3, fn 1), negatives above: 1 of 4 (fp 1, tn 3); MCC = (9 - 1) / sqrt(4^4) = 0.5.
    pos = np.array([0.9, 0.8, 0.6, 0.4])
    neg = np.array([0.7, 0.3, 0.2, 0.1])
    assert balanced_mcc(pos, neg) == pytest.approx(0.5)
    assert mcc(3, 1, 3, 1) == pytest.approx(0.5)
    assert balanced_mcc(pos, pos) == pytest.approx(0.0)  # no separation
    assert balanced_mcc(pos + 1, neg) == pytest.approx(1.0)
    assert np.isnan(balanced_mcc(np.empty(0), np.empty(0)))


def test_balanced_mcc_of_normal_scores_follows_the_papers_relation_to_auc():
    # science.md, section 3: MCC ~ 2 Phi(Phi^-1(AUC) / sqrt 2) - 1 for normal scores. From
    # the paper's AUCs (embedding 0.902, z-score cosine 0.696) it gives 0.639 and 0.283,
    # within 0.025 of its published MCCs, 0.648 and 0.262 (all-pairs MCC could not be).
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    for auc in (0.696, 0.902):
        shift = np.sqrt(2) * norm.ppf(auc)
        neg = rng.normal(size=200_000)
        pos = rng.normal(loc=shift, size=200_000)
        expected = 2 * norm.cdf(norm.ppf(auc) / np.sqrt(2)) - 1
        assert balanced_mcc(pos, neg) == pytest.approx(expected, abs=0.005)
    assert 2 * norm.cdf(norm.ppf(0.902) / np.sqrt(2)) - 1 == pytest.approx(0.648, abs=0.025)
    assert 2 * norm.cdf(norm.ppf(0.696) / np.sqrt(2)) - 1 == pytest.approx(0.262, abs=0.025)


def test_threads_and_tiles_do_not_change_the_result():
    x, y = _data(n=700, labels=30, ties=True)
    a = retrieval(x, y, x, y, self_index=np.arange(len(x)), n_threads=1)
    b = retrieval(
        x, y, x, y, self_index=np.arange(len(x)), n_threads=2, block_size=50, candidate_block=64
    )
    np.testing.assert_array_equal(a.quantiles, b.quantiles)
    np.testing.assert_array_equal(a.query_index, b.query_index)
    np.testing.assert_allclose(a.negative_scores, b.negative_scores, atol=1e-6)


def test_sampled_mode_does_not_depend_on_blocks():
    x, y = _data(n=600, labels=20)
    kwargs = dict(self_index=np.arange(len(x)), mode="sampled", n_sampled=100, seed=1)
    a = retrieval(x, y, x, y, block_size=7, **kwargs)
    b = retrieval(x, y, x, y, block_size=600, **kwargs)
    np.testing.assert_array_equal(a.quantiles, b.quantiles)


def test_sampled_mode_with_every_negative_sampled_is_exact():
    x, y = _data(n=300, labels=10, ties=True)
    exact = retrieval(x, y, x, y, self_index=np.arange(len(x)))
    sampled = retrieval(x, y, x, y, self_index=np.arange(len(x)), mode="sampled", n_sampled=10_000)
    np.testing.assert_allclose(sampled.quantiles, exact.quantiles, atol=1e-12)


def test_wtcs_retrieval_equals_a_direct_ranking():
    from l1000_assets.core.evaluation.connectivity import query_sets, wtcs

    rng = np.random.default_rng(5)
    y = rng.integers(0, 8, 60)
    centers = rng.normal(size=(8, 200))
    x = (centers[y] + rng.normal(size=(60, 200))).astype(np.float32)
    result = retrieval(
        x, y, x, y, metric="wtcs", self_index=np.arange(60), wtcs_k=20, candidate_block=13
    )
    up, down = query_sets(x, k=20)
    s = wtcs(up, down, x)
    same = y[:, None] == y[None, :]
    off = ~np.eye(60, dtype=bool)
    from l1000_assets.core.evaluation.metrics import rank_quantiles

    direct = rank_quantiles(s, same & off, ~same)
    np.testing.assert_allclose(result.quantiles, direct, atol=1e-12)


def test_unknown_metric_and_mode_are_refused():
    x, y = _data(n=20)
    with pytest.raises(ValueError, match="unknown metric"):
        retrieval(x, y, x, y, metric="manhattan")
    with pytest.raises(ValueError, match="mode"):
        retrieval(x, y, x, y, mode="approximate")


def test_ncs_retrieval_equals_a_direct_ranking_of_ncs():
    from l1000_assets.core.evaluation.connectivity import ncs, query_sets, wtcs
    from l1000_assets.core.evaluation.metrics import rank_quantiles

    rng = np.random.default_rng(8)
    y = rng.integers(0, 6, 50)
    groups = np.array(["A375|trt_cp", "MCF7|trt_cp", "MCF7|trt_sh"])[rng.integers(0, 3, 50)]
    x = (rng.normal(size=(6, 120))[y] + rng.normal(size=(50, 120))).astype(np.float32)
    up, down = query_sets(x, k=15)
    direct_scores = np.nan_to_num(ncs(wtcs(up, down, x), groups), nan=0.0)
    same = y[:, None] == y[None, :]
    direct = rank_quantiles(direct_scores, same & ~np.eye(50, dtype=bool), ~same)
    for mode in ("exact", "sampled"):
        result = retrieval(
            x,
            y,
            x,
            y,
            metric="ncs",
            self_index=np.arange(50),
            wtcs_k=15,
            candidate_groups=groups,
            candidate_block=7,
            mode=mode,
        )
        np.testing.assert_allclose(result.quantiles, direct, atol=1e-6)
    with pytest.raises(ValueError, match="candidate_groups"):
        retrieval(x, y, x, y, metric="ncs", wtcs_k=15)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_positives_scored_per_query_when_queries_spread_over_many_labels(metric, monkeypatch):
    """Few queries over many labels: each query's range is scored on its own (no long span
    tile); the result is the same."""
    import l1000_assets.core.evaluation.retrieval as evaluation

    x, y = _data(n=400, labels=60, ties=True)
    dense = retrieval(x, y, x, y, metric=metric, self_index=np.arange(len(x)), candidate_block=16)
    monkeypatch.setattr(evaluation, "DENSE_SPAN", 0)
    sparse = retrieval(x, y, x, y, metric=metric, self_index=np.arange(len(x)), candidate_block=16)
    np.testing.assert_array_equal(sparse.quantiles, dense.quantiles)
    np.testing.assert_allclose(sparse.negative_scores, dense.negative_scores, atol=1e-5)
    direct = same_label_quantiles(x, y, metric=metric)
    np.testing.assert_allclose(np.sort(sparse.quantiles), np.sort(direct), atol=1e-12)
