"""Exact blocked retrieval against a direct computation; sampled mode; MCC."""

import numpy as np
import pytest

from l1000_assets.core.evaluation.metrics import same_label_quantiles
from l1000_assets.core.evaluation.retrieval import retrieval


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


def test_mcc_matches_a_direct_count():
    x, y = _data(n=150, labels=5)
    result = retrieval(x, y, x, y, self_index=np.arange(len(x)), block_size=32)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = xn @ xn.T
    same = y[:, None] == y[None, :]
    off = ~np.eye(len(x), dtype=bool)
    pred = s > result.threshold
    tp = (pred & same & off).sum()
    fp = (pred & ~same).sum()
    tn = (~pred & ~same).sum()
    fn = (~pred & same & off).sum()
    # BLAS sums in another order for another block shape: a pair or two right at the
    # threshold may fall on the other side.
    np.testing.assert_allclose(result.confusion, (tp, fp, tn, fn), atol=3)
    assert sum(result.confusion) == len(x) * (len(x) - 1)
    expected = (tp * tn - fp * fn) / np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    assert result.mcc == pytest.approx(expected, abs=1e-3)
    assert 0 < result.mcc < 1


def test_threads_and_tiles_do_not_change_the_result():
    x, y = _data(n=700, labels=30, ties=True)
    a = retrieval(x, y, x, y, self_index=np.arange(len(x)), n_threads=1)
    b = retrieval(
        x, y, x, y, self_index=np.arange(len(x)), n_threads=2, block_size=50, candidate_block=64
    )
    np.testing.assert_array_equal(a.quantiles, b.quantiles)
    np.testing.assert_array_equal(a.query_index, b.query_index)
    assert a.confusion == b.confusion


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
    assert sparse.confusion == dense.confusion
    direct = same_label_quantiles(x, y, metric=metric)
    np.testing.assert_allclose(np.sort(sparse.quantiles), np.sort(direct), atol=1e-12)
