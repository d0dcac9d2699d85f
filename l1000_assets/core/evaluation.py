"""Retrieval evaluation at scale: exact rank quantiles without sorting rows, and the paper's
sampled mode.

For each query (a row of ``queries``) the candidates with the same label are its positives
(the query itself excluded) and all others its negatives. The rank quantile of a positive
with score ``p`` is ``(#negatives > p + 0.5 #negatives == p) / #negatives``.

**Exact mode** scores one block of queries against every candidate with one matrix
product, then counts without sorting: each row's scores are bucketed into ``n_bins``
histogram bins (one ``bincount`` for the whole block); negatives in higher bins are read
off the cumulative histogram, and only the few negatives that share a bin with a positive
are compared exactly (a small sort of 64-bit keys that order by row, bin and score). Memory
is ``O(block_size x n_candidates)``; no N x N matrix, no per-row sort.

**Sampled mode** (the paper's): every positive of a query is kept; negatives are a seeded
random sample of ``n_sampled`` candidates per query.

MCC thresholds similarity at its median (estimated from a seeded sample of pairs) and
classifies each (query, candidate) pair as same-label or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from l1000_assets.core.metrics import RetrievalSummary, l2_normalize, rank_quantiles


@dataclass(frozen=True)
class RetrievalResult:
    """Quantiles of every positive, the query each belongs to, and MCC counts."""

    quantiles: np.ndarray        # (n_positives,) float64
    query_index: np.ndarray      # (n_positives,) int64
    n_queries: int
    confusion: tuple[int, int, int, int]   # tp, fp, tn, fn at the median threshold
    threshold: float

    @property
    def mcc(self) -> float:
        tp, fp, tn, fn = (float(v) for v in self.confusion)
        den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        return (tp * tn - fp * fn) / den if den else 0.0

    def summary(self, mask: np.ndarray | None = None) -> RetrievalSummary:
        """Pooled metrics, optionally over the positives of the queries in ``mask``."""
        q = self.quantiles if mask is None else self.quantiles[mask[self.query_index]]
        n = self.n_queries if mask is None else int(mask.sum())
        return RetrievalSummary.from_quantiles(q, n)


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if metric == "cosine":
        return l2_normalize(x)
    if metric == "euclidean":
        return np.ascontiguousarray(x)
    raise ValueError(f"unknown metric {metric!r}")


def _scores(q: np.ndarray, c: np.ndarray, c_sq: np.ndarray, metric: str) -> np.ndarray:
    s = q @ c.T
    if metric == "euclidean":  # negated squared distance: larger is more similar
        s *= 2.0
        s -= c_sq[None, :]
        s -= (q * q).sum(axis=1)[:, None]
    return s


def _sortable(scores: np.ndarray) -> np.ndarray:
    """float32 -> uint64 whose integer order is the float order (for composite keys)."""
    bits = np.ascontiguousarray(scores, dtype=np.float32).view(np.uint32).astype(np.uint64)
    negative = (bits & 0x80000000) != 0
    return np.where(negative, ~bits & 0xFFFFFFFF, bits | 0x80000000)


def _label_ranges(candidate_labels: np.ndarray):
    """Candidates ordered by label; for every label its [start, stop) in that order."""
    codes, inverse = np.unique(candidate_labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(codes)), side="left")
    stops = np.searchsorted(inverse[order], np.arange(len(codes)), side="right")
    return codes, order, starts, stops


def median_similarity(queries: np.ndarray, candidates: np.ndarray, *, metric: str,
                      n_pairs: int = 200_000, seed: int = 0) -> float:
    """Median similarity of a seeded random sample of (query, candidate) pairs."""
    rng = np.random.default_rng(seed)
    qi = rng.integers(0, len(queries), n_pairs)
    ci = rng.integers(0, len(candidates), n_pairs)
    q, c = queries[qi], candidates[ci]
    s = (q * c).sum(axis=1) if metric == "cosine" else -((q - c) ** 2).sum(axis=1)
    return float(np.median(s))


def retrieval(
    queries: np.ndarray,
    query_labels: np.ndarray,
    candidates: np.ndarray,
    candidate_labels: np.ndarray,
    *,
    metric: str = "cosine",
    self_index: np.ndarray | None = None,
    mode: str = "exact",
    n_sampled: int = 10_000,
    seed: int = 0,
    block_size: int = 64,
    n_bins: int = 4096,
) -> RetrievalResult:
    """Rank quantiles of same-label candidates for every query.

    Parameters
    ----------
    queries, candidates
        ``(n_q, d)`` and ``(n_c, d)`` vectors (profiles or embeddings).
    query_labels, candidate_labels
        Labels defining positives (equal) and negatives (different).
    metric
        ``"cosine"`` or ``"euclidean"`` (negated squared distance).
    self_index
        For each query, the row of the same item among the candidates (excluded from
        positives and negatives), or -1. ``None``: no query is among the candidates.
    mode
        ``"exact"`` or ``"sampled"`` (``n_sampled`` random negatives per query, seeded).
    block_size, n_bins
        Queries per matrix product; histogram bins per row (exact mode).
    """
    q_all = _prepare(queries, metric)
    c_all = _prepare(candidates, metric)
    query_labels = np.asarray(query_labels)
    candidate_labels = np.asarray(candidate_labels)
    if self_index is None:
        self_index = np.full(len(q_all), -1, dtype=np.int64)
    codes, order, starts, stops = _label_ranges(candidate_labels)
    # Work in label-sorted candidate order: each query's positives are one contiguous range.
    c = c_all[order]
    position = np.empty(len(order), dtype=np.int64)
    position[order] = np.arange(len(order))
    self_pos = np.where(self_index >= 0, position[np.maximum(self_index, 0)], -1)
    label_code = np.searchsorted(codes, query_labels)
    known = (label_code < len(codes)) & (codes[np.minimum(label_code, len(codes) - 1)]
                                          == query_labels)
    lo = np.where(known, starts[np.minimum(label_code, len(codes) - 1)], 0)
    hi = np.where(known, stops[np.minimum(label_code, len(codes) - 1)], 0)
    c_sq = (c * c).sum(axis=1) if metric == "euclidean" else None
    threshold = median_similarity(q_all, c, metric=metric, seed=seed)
    rng = np.random.default_rng(seed)

    quantiles, owners = [], []
    tp = fp = tn = fn = 0
    n_c = len(c)
    for b0 in range(0, len(q_all), block_size):
        b1 = min(b0 + block_size, len(q_all))
        s = _scores(q_all[b0:b1], c, c_sq, metric)
        rows = np.arange(b1 - b0)
        blo, bhi, bself = lo[b0:b1], hi[b0:b1], self_pos[b0:b1]
        has_self = bself >= 0
        self_is_positive = has_self & (bself >= blo) & (bself < bhi)
        n_pos = bhi - blo - self_is_positive
        n_neg = n_c - (bhi - blo) - (has_self & ~self_is_positive)
        # MCC counts at the median threshold (the query itself is not a pair).
        above = np.count_nonzero(s > threshold, axis=1)
        range_above = np.array([(s[i, blo[i]:bhi[i]] > threshold).sum() for i in rows])
        self_above = np.zeros(len(rows), dtype=np.int64)
        self_above[has_self] = s[rows[has_self], bself[has_self]] > threshold
        pos_above = range_above - np.where(self_is_positive, self_above, 0)
        neg_above = above - range_above - np.where(has_self & ~self_is_positive, self_above, 0)
        tp += int(pos_above.sum())
        fn += int((n_pos - pos_above).sum())
        fp += int(neg_above.sum())
        tn += int((n_neg - neg_above).sum())
        if mode == "exact":
            q, owner = _exact_block(s, blo, bhi, bself, n_neg, n_bins,
                                    (-1.0001, 1.0001) if metric == "cosine" else None)
        elif mode == "sampled":
            q, owner = _sampled_block(s, blo, bhi, bself, n_sampled, rng)
        else:
            raise ValueError(f"mode must be 'exact' or 'sampled', not {mode!r}")
        quantiles.append(q)
        owners.append(owner + b0)
    return RetrievalResult(
        quantiles=np.concatenate(quantiles) if quantiles else np.empty(0),
        query_index=np.concatenate(owners) if owners else np.empty(0, np.int64),
        n_queries=len(q_all), confusion=(tp, fp, tn, fn), threshold=threshold)


def _positives(s, lo, hi, self_pos):
    """(row, column) of every positive in the block (self excluded)."""
    counts = hi - lo
    rows = np.repeat(np.arange(len(lo)), counts)
    cols = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if len(rows) else \
        np.empty(0, np.int64)
    keep = cols != self_pos[rows]
    return rows[keep], cols[keep]


def _exact_block(s, lo, hi, self_pos, n_neg, n_bins, fixed_range=None):
    b, n = s.shape
    p_rows, p_cols = _positives(s, lo, hi, self_pos)
    if len(p_rows) == 0:
        return np.empty(0), np.empty(0, np.int64)
    # Bucket every score. Bins only need to be monotone in the score (a negative in a higher
    # bin than a positive scores higher); float32 rounding of the row offsets keeps that,
    # and the 0.1% margin keeps the top score out of the next row's bins.
    if b * n_bins > 2**22:
        raise ValueError("block_size x n_bins must stay below 2**22 (float32 bin offsets)")
    if fixed_range is not None:
        s_min, s_max = fixed_range
    else:
        s_min, s_max = float(s.min()), float(s.max())
    span = max(s_max - s_min, 1e-12) * (1 + 1e-3)
    scale = np.float32(n_bins / span)
    work = np.subtract(s, np.float32(s_min), dtype=np.float32)
    work *= scale
    work += (np.arange(b, dtype=np.float32) * n_bins)[:, None]
    flat_bin = work.astype(np.intp).ravel()  # intp: no conversion in bincount/take
    hist = np.bincount(flat_bin, minlength=b * n_bins).reshape(b, n_bins)
    # Take the positives and the query itself out: histograms of negatives only.
    p_bin = flat_bin[p_rows * n + p_cols]
    np.subtract.at(hist.reshape(-1), p_bin, 1)
    r = np.nonzero(self_pos >= 0)[0]
    np.subtract.at(hist.reshape(-1), flat_bin[r * n + self_pos[r]], 1)
    above_bin = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]          # negatives in bins >= k
    above_bin = np.concatenate([above_bin[:, 1:], np.zeros((b, 1), above_bin.dtype)], axis=1)
    greater = above_bin.reshape(-1)[p_bin].astype(np.float64)       # negatives in bins > k
    # Exact comparison with the negatives that share a bin with some positive.
    marked = np.zeros(b * n_bins, dtype=bool)
    marked[p_bin] = True
    same_bin = np.flatnonzero(np.take(marked, flat_bin))
    r, col = np.divmod(same_bin, n)
    negative = ((col < lo[r]) | (col >= hi[r])) & (col != self_pos[r])
    same_bin = same_bin[negative]
    key = (flat_bin[same_bin].astype(np.uint64) << np.uint64(32)) | \
        _sortable(s.reshape(-1)[same_bin])
    key.sort()
    p_key = (p_bin.astype(np.uint64) << np.uint64(32))
    p_score = _sortable(s[p_rows, p_cols])
    bin_end = np.searchsorted(key, p_key | np.uint64(0xFFFFFFFF), side="right")
    right = np.searchsorted(key, p_key | p_score, side="right")
    left = np.searchsorted(key, p_key | p_score, side="left")
    greater += (bin_end - right) + 0.5 * (right - left)
    return greater / n_neg[p_rows], p_rows


def _sampled_block(s, lo, hi, self_pos, n_sampled, rng):
    b, n = s.shape
    out_q, out_rows = [], []
    for i in range(b):
        neg = np.ones(n, dtype=bool)
        neg[lo[i]:hi[i]] = False
        if self_pos[i] >= 0:
            neg[self_pos[i]] = False
        neg_idx = np.nonzero(neg)[0]
        if len(neg_idx) > n_sampled:
            neg_idx = rng.choice(neg_idx, n_sampled, replace=False)
        pos = np.zeros(n, dtype=bool)
        pos[lo[i]:hi[i]] = True
        if self_pos[i] >= 0:
            pos[self_pos[i]] = False
        q = rank_quantiles(s[i:i + 1], pos[None, :],
                           np.isin(np.arange(n), neg_idx)[None, :])
        out_q.append(q)
        out_rows.append(np.full(len(q), i, dtype=np.int64))
    return np.concatenate(out_q), np.concatenate(out_rows)
