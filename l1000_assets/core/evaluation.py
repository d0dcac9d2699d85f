"""Retrieval evaluation at scale: exact rank quantiles without sorting rows, and the paper's
sampled mode.

For each query (a row of ``queries``) the candidates with the same label are its positives
(the query itself excluded) and all others its negatives. The rank quantile of a positive
with score ``p`` is ``(#negatives > p + 0.5 #negatives == p) / #negatives``.

**Exact mode** scores one block of queries against every candidate with one matrix
product, then counts without sorting, in one compiled pass per row (numba, rows in
parallel): every negative score goes into one of ``n_bins`` histogram bins; negatives in
higher bins than a positive are read off the cumulative histogram, and only negatives that
share a bin with a positive are compared with it exactly. Bins are monotone in the score,
so the counts are exact, ties included. Memory is ``O(block_size x n_candidates)``; no
N x N matrix, no per-row sort.

**Sampled mode** (the paper's): every positive of a query is kept; negatives are a seeded
random sample of ``n_sampled`` candidates per query.

MCC thresholds similarity at its median (estimated from a seeded sample of pairs) and
classifies each (query, candidate) pair as same-label or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
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
    n_bins: int = 1024,
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
        blo, bhi, bself = lo[b0:b1], hi[b0:b1], self_pos[b0:b1]
        has_self = bself >= 0
        self_is_positive = has_self & (bself >= blo) & (bself < bhi)
        n_pos = bhi - blo - self_is_positive
        n_neg = n_c - (bhi - blo) - (has_self & ~self_is_positive)
        if mode == "exact":
            q, owner, above = _exact_block(s, blo, bhi, bself, n_neg, n_bins,
                                           (-1.0001, 1.0001) if metric == "cosine" else None,
                                           threshold)
            pos_above, neg_above = above[:, 0], above[:, 1]
        elif mode == "sampled":
            q, owner = _sampled_block(s, blo, bhi, bself, n_sampled, rng)
            pos_above, neg_above = _above_threshold(s, blo, bhi, bself, threshold)
        else:
            raise ValueError(f"mode must be 'exact' or 'sampled', not {mode!r}")
        # MCC counts at the median threshold (the query itself is not a pair).
        tp += int(pos_above.sum())
        fn += int((n_pos - pos_above).sum())
        fp += int(neg_above.sum())
        tn += int((n_neg - neg_above).sum())
        quantiles.append(q)
        owners.append(owner + b0)
    return RetrievalResult(
        quantiles=np.concatenate(quantiles) if quantiles else np.empty(0),
        query_index=np.concatenate(owners) if owners else np.empty(0, np.int64),
        n_queries=len(q_all), confusion=(tp, fp, tn, fn), threshold=threshold)


def _above_threshold(s, lo, hi, self_pos, threshold):
    """Positives and negatives of each row scoring above ``threshold``."""
    rows = np.arange(len(lo))
    above = np.count_nonzero(s > threshold, axis=1)
    in_range = np.array([(s[i, lo[i]:hi[i]] > threshold).sum() for i in rows])
    has_self = self_pos >= 0
    self_above = np.zeros(len(rows), dtype=np.int64)
    self_above[has_self] = s[rows[has_self], self_pos[has_self]] > threshold
    self_positive = has_self & (self_pos >= lo) & (self_pos < hi)
    pos_above = in_range - np.where(self_positive, self_above, 0)
    neg_above = above - in_range - np.where(has_self & ~self_positive, self_above, 0)
    return pos_above, neg_above


@numba.njit(inline="always")
def _bin(v, smin, scale, n_bins):
    return min(max(np.int32((v - smin) * scale), np.int32(0)), np.int32(n_bins - 1))


@numba.njit(parallel=True, cache=True)
def _count_block(s, lo, hi, self_pos, offsets, greater, equal, n_bins, lower, upper,
                 threshold, above_threshold):
    """Per row: for each positive, negatives scoring higher and equal; and how many
    positives and negatives score above ``threshold`` (for MCC)."""
    b, n = s.shape
    for i in numba.prange(b):
        row = s[i]
        l, h, sp = lo[i], hi[i], self_pos[i]
        o = offsets[i]
        npos = offsets[i + 1] - o
        smin, smax = lower, upper
        if smin >= smax:  # no fixed range: this row's own
            smin = row[0]
            smax = row[0]
            for j in range(n):
                smin = min(smin, row[j])
                smax = max(smax, row[j])
        scale = np.float32(n_bins / ((smax - smin) * 1.001 + 1e-30))
        pos = np.empty(npos, np.float32)
        pbin = np.empty(npos, np.int32)
        k = 0
        pos_above = 0
        for j in range(l, h):
            if j != sp:
                pos[k] = row[j]
                pbin[k] = _bin(row[j], smin, scale, n_bins)
                pos_above += row[j] > threshold
                k += 1
        order = np.argsort(pbin)
        first = np.full(n_bins, -1, np.int32)
        last = np.full(n_bins, -1, np.int32)
        for t in range(npos):
            bb = pbin[order[t]]
            if first[bb] < 0:
                first[bb] = t
            last[bb] = t + 1
        hist = np.zeros(n_bins, np.int32)
        g_in = np.zeros(npos, np.int64)
        e_in = np.zeros(npos, np.int64)
        neg_above = 0
        # Negatives lie before and after the positives' range.
        for part in range(2):
            start = 0 if part == 0 else h
            stop = l if part == 0 else n
            for j in range(start, stop):
                v = row[j]
                neg_above += v > threshold
                bb = _bin(v, smin, scale, n_bins)
                hist[bb] += 1
                if first[bb] >= 0:
                    for t in range(first[bb], last[bb]):
                        m = order[t]
                        if v > pos[m]:
                            g_in[m] += 1
                        elif v == pos[m]:
                            e_in[m] += 1
        if sp >= 0 and (sp < l or sp >= h):  # the query itself is no negative: take it out
            v = row[sp]
            neg_above -= v > threshold
            bb = _bin(v, smin, scale, n_bins)
            hist[bb] -= 1
            if first[bb] >= 0:
                for t in range(first[bb], last[bb]):
                    m = order[t]
                    if v > pos[m]:
                        g_in[m] -= 1
                    elif v == pos[m]:
                        e_in[m] -= 1
        above = np.int64(0)
        above_bin = np.zeros(n_bins + 1, np.int64)
        for bb in range(n_bins - 1, -1, -1):
            above += hist[bb]
            above_bin[bb] = above
        for m in range(npos):
            greater[o + m] = above_bin[pbin[m] + 1] + g_in[m]
            equal[o + m] = e_in[m]
        above_threshold[i, 0] = pos_above
        above_threshold[i, 1] = neg_above


def _exact_block(s, lo, hi, self_pos, n_neg, n_bins, fixed_range, threshold):
    """Quantiles of every positive of the block's rows, and (tp, fp) at ``threshold``."""
    b = s.shape[0]
    n_pos = hi - lo - ((self_pos >= lo) & (self_pos < hi))
    offsets = np.concatenate([[0], np.cumsum(n_pos)]).astype(np.int64)
    greater = np.empty(offsets[-1], np.int64)
    equal = np.empty(offsets[-1], np.int64)
    above = np.empty((b, 2), np.int64)
    lower, upper = fixed_range if fixed_range is not None else (0.0, 0.0)
    _count_block(np.ascontiguousarray(s, dtype=np.float32), lo.astype(np.int64),
                 hi.astype(np.int64), self_pos.astype(np.int64), offsets, greater, equal,
                 n_bins, np.float32(lower), np.float32(upper), np.float32(threshold), above)
    rows = np.repeat(np.arange(b), n_pos)
    q = (greater + 0.5 * equal) / np.maximum(n_neg[rows], 1)
    return q, rows, above


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
