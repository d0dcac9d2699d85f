"""Exact blocked retrieval against a direct computation; sampled mode; MCC."""

import numpy as np
import pytest

from l1000_assets.core.evaluation import retrieval
from l1000_assets.core.metrics import same_label_quantiles


def _data(n=300, d=6, labels=25, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, labels, n)
    x = rng.normal(size=(n, d)).astype(np.float32) + 0.8 * y[:, None] % 3
    if ties:
        x = np.round(x)  # many exactly equal scores
    return x, y


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("block_size,n_bins", [(7, 16), (64, 4096), (300, 3)])
def test_exact_equals_direct(metric, ties, block_size, n_bins):
    x, y = _data(ties=ties)
    result = retrieval(x, y, x, y, metric=metric, self_index=np.arange(len(x)),
                       block_size=block_size, n_bins=n_bins)
    direct = same_label_quantiles(x, y, metric=metric)
    np.testing.assert_allclose(np.sort(result.quantiles), np.sort(direct), atol=1e-12)
    assert result.summary().auc == pytest.approx(1 - direct.mean())


def test_queries_outside_the_candidates():
    x, y = _data(n=200)
    q, qy = x[:40] + 0.01, y[:40]
    result = retrieval(q, qy, x, y, block_size=16)
    for i in range(3):
        s = (q[i] / np.linalg.norm(q[i])) @ (x / np.linalg.norm(x, axis=1, keepdims=True)).T
        neg = s[y != qy[i]]
        expected = [((neg > p).sum() + 0.5 * (neg == p).sum()) / len(neg) for p in s[y == qy[i]]]
        np.testing.assert_allclose(np.sort(result.quantiles[result.query_index == i]),
                                   np.sort(expected))


def test_sampled_mode_is_deterministic_and_close_to_exact():
    x, y = _data(n=2000, labels=40)
    kwargs = dict(self_index=np.arange(len(x)), mode="sampled", n_sampled=500, seed=3)
    a = retrieval(x, y, x, y, **kwargs)
    b = retrieval(x, y, x, y, **kwargs)
    np.testing.assert_array_equal(a.quantiles, b.quantiles)
    c = retrieval(x, y, x, y, **{**kwargs, "seed": 4})
    assert not np.array_equal(a.quantiles, c.quantiles)
    exact = retrieval(x, y, x, y, self_index=np.arange(len(x)))
    assert a.summary().auc == pytest.approx(exact.summary().auc, abs=0.01)


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
