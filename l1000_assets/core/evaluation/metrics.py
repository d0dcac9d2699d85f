"""Retrieval metrics of the paper's protocol, computed in blocks.

The rank quantile of a positive with score ``p`` among ``N`` negatives ``n_j`` is
``q = (1/N) * sum_j [1 if n_j > p, 0.5 if n_j == p, 0 otherwise]``; AUC = 1 - mean q.
Per query only the scores of one block of queries against all candidates are held,
and counts come from a per-row sort of the negatives plus binary search, so no N x N
matrix is ever kept and nothing is arg-sorted over the whole similarity matrix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from l1000_assets.core.embeddings.vectors import normalize_rows

RECALL_AT = {"recall_top_0.001": 0.001, "recall_top_0.01": 0.01, "recall_top_0.1": 0.1}
"""Recall metrics and their rank-quantile thresholds: a positive counts 1 when ``q < x`` and
one half when ``q == x`` (the paper's ``sgn``; :func:`recall_at`)."""

SUMMARY_METRICS = ("median_quantile", *RECALL_AT, "auc")
"""The pooled summary of rank quantiles, under the names of the tidy evaluation table."""


def recall_at(
    q: NDArray[np.float64], x: float | NDArray[np.float64], weights=None
) -> float | NDArray[np.float64]:
    """Fraction of positives within the top ``x``: ``q < x`` counts 1, ``q == x`` one half
    (as the paper's ``(1 + sgn(x - q)) / 2``). ``q`` sorted ascending when ``x`` is an array
    of thresholds (a recall curve); ``weights``: multiplicities (a bootstrap resample)."""
    q = np.asarray(q, np.float64)
    if np.ndim(x):
        below = np.searchsorted(q, x, side="left")
        at_or_below = np.searchsorted(q, x, side="right")
        return (below + 0.5 * (at_or_below - below)) / len(q)
    score = (q < x) + 0.5 * (q == x)
    if weights is None:
        return float(np.mean(score))
    return float((weights * score).sum() / weights.sum())


def summarize_quantiles(
    q: NDArray[np.float64], weights: NDArray[np.float64] | None = None
) -> dict[str, float]:
    """The retrieval summary of rank quantiles: :data:`SUMMARY_METRICS` -> value.

    Median ``q``, recall at top-0.001 / 0.01 / 0.1 (:func:`recall_at`: ``q < x`` counts
    1, ``q == x`` one half) and AUC (``1 - mean q``), pooled over all positives; NaN when
    there are none.

    Parameters
    ----------
    q
        ``(n_positives,)`` rank quantiles.
    weights
        Multiplicity of each quantile (a bootstrap resample); ``q`` must then be sorted
        ascending, and the median is the quantile where the cumulative weight reaches half.
    """
    if weights is not None:
        total = float(weights.sum())
        if len(q) == 0 or total == 0:
            return dict.fromkeys(SUMMARY_METRICS, math.nan)
        median = float(q[np.searchsorted(np.cumsum(weights), total / 2)])
        return {
            "median_quantile": median,
            **{name: recall_at(q, x, weights) for name, x in RECALL_AT.items()},
            "auc": float(1.0 - (weights * q).sum() / total),
        }
    if len(q) == 0:
        return dict.fromkeys(SUMMARY_METRICS, math.nan)
    return {
        "median_quantile": float(np.median(q)),
        **{name: recall_at(q, x) for name, x in RECALL_AT.items()},
        "auc": float(1.0 - np.mean(q)),
    }


@dataclass(frozen=True)
class RetrievalSummary:
    """One retrieval's pooled summary: query and positive counts and ``metrics``
    (:data:`SUMMARY_METRICS` -> value, from :func:`summarize_quantiles`); ``summary[name]``
    reads a metric."""

    n_queries: int
    n_positives: int
    metrics: Mapping[str, float]

    def __getitem__(self, metric: str) -> float:
        return self.metrics[metric]

    def as_dict(self) -> dict[str, float]:
        """Counts and metrics in one flat dict (the model card's form)."""
        return {"n_queries": self.n_queries, "n_positives": self.n_positives, **self.metrics}

    @classmethod
    def from_quantiles(cls, q: NDArray[np.float64], n_queries: int) -> RetrievalSummary:
        return cls(n_queries, len(q), summarize_quantiles(q))


def rank_quantiles(
    scores: NDArray[np.floating],
    positive: NDArray[np.bool_],
    negative: NDArray[np.bool_],
) -> NDArray[np.float64]:
    """Rank quantiles of every positive within its row, ties counting half.

    Parameters
    ----------
    scores
        ``(n_queries, n_candidates)`` similarities of one block of queries.
    positive, negative
        Boolean masks of the same shape. Entries in neither mask (the query itself,
        excluded candidates) are ignored.

    Returns
    -------
    numpy.ndarray
        1-D float64 array with one quantile per positive, in row-major order. Rows
        with no negative contribute nothing.
    """
    out = []
    neg_scores = np.where(negative, scores, -np.inf)
    neg_sorted = np.sort(neg_scores, axis=1)
    n_neg = negative.sum(axis=1)
    for i in np.nonzero(positive.any(axis=1) & (n_neg > 0))[0]:
        p = scores[i, positive[i]]
        row = neg_sorted[i]
        below_or_equal = np.searchsorted(row, p, side="right")
        below = np.searchsorted(row, p, side="left")
        greater = row.shape[0] - below_or_equal
        equal = below_or_equal - below
        out.append((greater + 0.5 * equal) / n_neg[i])
    return np.concatenate(out) if out else np.empty(0)


def same_label_quantiles(
    embeddings: NDArray[np.floating],
    labels: NDArray,
    *,
    metric: str = "cosine",
    block_size: int = 1024,
) -> NDArray[np.float64]:
    """Exact same-label retrieval: each row queries all others.

    Positives are the other rows with the query's label, negatives all rows with a
    different label. ``metric`` is ``"cosine"`` or ``"euclidean"`` (negated distance).
    Memory is ``O(block_size x n)``.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    if metric == "cosine":
        x = normalize_rows(x)
    elif metric != "euclidean":
        raise ValueError(f"unknown metric {metric!r}")
    labels = np.asarray(labels)
    sq = (x * x).sum(axis=1)
    n = len(x)
    out = []
    for b0 in range(0, n, block_size):
        b1 = min(b0 + block_size, n)
        scores = x[b0:b1] @ x.T
        if metric == "euclidean":
            scores = -(sq[b0:b1, None] + sq[None, :] - 2 * scores)
        same = labels[b0:b1, None] == labels[None, :]
        not_self = np.ones_like(same)
        not_self[np.arange(b1 - b0), np.arange(b0, b1)] = False
        out.append(rank_quantiles(scores, same & not_self, ~same))
    return np.concatenate(out) if out else np.empty(0)
