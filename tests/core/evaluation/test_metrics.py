"""Rank quantiles against hand-worked cases and against a direct computation."""

import numpy as np
import pytest

from l1000_assets.core.evaluation.metrics import (
    RetrievalSummary,
    rank_quantiles,
    same_label_quantiles,
)


def test_rank_quantile_worked_by_hand_with_ties():
    # One query: positives score 0.9 and 0.5; negatives 0.95, 0.5, 0.5, 0.1.
    scores = np.array([[0.9, 0.5, 0.95, 0.5, 0.5, 0.1]])
    pos = np.array([[True, True, False, False, False, False]])
    neg = ~pos
    q = rank_quantiles(scores, pos, neg)
    # 0.9: one negative above -> 1/4. 0.5: one above, two equal (half each) -> 2/4.
    np.testing.assert_allclose(q, [0.25, 0.5])
    s = RetrievalSummary.from_quantiles(q, 1)
    assert s["auc"] == pytest.approx(1 - 0.375)
    assert s["median_quantile"] == pytest.approx(0.375)
    assert s["recall_top_0.1"] == 0.0


def _direct(x, labels, metric):
    n = len(x)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = x @ x.T
    else:
        sim = -((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    out = []
    for i in range(n):
        negs = sim[i, labels != labels[i]]
        for j in range(n):
            if j != i and labels[j] == labels[i]:
                out.append(((negs > sim[i, j]).sum() + 0.5 * (negs == sim[i, j]).sum()) / len(negs))
    return np.array(out)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("block_size", [1, 7, 1000])
def test_blocked_equals_direct(metric, block_size):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, 60)
    x = rng.standard_normal((60, 5)).astype(np.float32) + labels[:, None] * 0.3
    got = same_label_quantiles(x, labels, metric=metric, block_size=block_size)
    np.testing.assert_allclose(got, _direct(x.astype(np.float64), labels, metric), atol=1e-6)
