"""Retrieval metrics of the paper's protocol, computed in blocks.

The rank quantile of a positive with score ``p`` among ``N`` negatives ``n_j`` is
``q = (1/N) * sum_j [1 if n_j > p, 0.5 if n_j == p, 0 otherwise]``; AUC = 1 - mean q.
Per query only the scores of one block of queries against all candidates are held,
and counts come from a per-row sort of the negatives plus binary search, so no N x N
matrix is ever kept and nothing is arg-sorted over the whole similarity matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from l1000_assets.core.embeddings.vectors import normalize_rows


@dataclass(frozen=True)
class RetrievalSummary:
    """Pooled over all positives."""

    n_queries: int
    n_positives: int
    median_quantile: float
    recall_top_0001: float
    recall_top_001: float
    recall_top_01: float
    auc: float

    @classmethod
    def from_quantiles(cls, q: np.ndarray, n_queries: int) -> RetrievalSummary:
        if len(q) == 0:
            nan = float("nan")
            return cls(n_queries, 0, nan, nan, nan, nan, nan)
        return cls(
            n_queries=n_queries,
            n_positives=len(q),
            median_quantile=float(np.median(q)),
            recall_top_0001=float(np.mean(q <= 0.001)),
            recall_top_001=float(np.mean(q <= 0.01)),
            recall_top_01=float(np.mean(q <= 0.1)),
            auc=float(1.0 - np.mean(q)),
        )


def rank_quantiles(
    scores: np.ndarray,
    positive: np.ndarray,
    negative: np.ndarray,
) -> np.ndarray:
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
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    metric: str = "cosine",
    block_size: int = 1024,
) -> np.ndarray:
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
