"""Compiled kernels over the gene-major signature store, and the numpy form of the ES.

* :func:`es_kernel`: the ES of many gene sets in many signatures, read straight from the
  store's int16 ranks and float16 z-scores (as uint16, through a lookup table: numba has no
  float16). Per (set, signature) it gathers the set's ranks and weights and runs CMap's walk,
  :func:`~l1000_assets.core.evaluation.kernels.es_walk`, the same code the evaluation
  scores with; signatures are processed in tiles of :data:`TILE` in parallel, so the rows of
  a set's genes are read as short contiguous runs that stay in cache across the tile.
* :func:`rank_sum_kernel`: the sum of a set's ranks in each signature (SigCom's rank test).
* :func:`segment_maxq`: CMap's maximum-quantile summary of scores over segments (the
  signatures of a perturbagen in a cell line, the cell lines of a perturbagen).
* :func:`tau_kernel`: tau from per-item reference quantiles.
* :func:`es_from_hits`: the ES from the hits' positions, vectorized with numpy: the
  benchmark's side-by-side implementation of the score, and the walk of the ranked-list
  enrichment of perturbagens.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

from l1000_assets.core.evaluation.kernels import ES_TIE_TOLERANCE, es_walk

TILE = 256
"""Signatures per parallel work item of the store kernels."""

MAXQ_QUANTILES = (0.33, 0.67)
"""The two quantiles of CMap's maximum-quantile statistic ("maxq")."""


@numba.njit(parallel=True, cache=True)
def es_kernel(ranks, zbits, table, cols, sets, offsets, out):
    """``out[s, i]``: ES of gene set ``s`` (store rows ``sets[offsets[s]:offsets[s + 1]]``)
    in signature ``cols[i]``; NaN for an empty set.

    ``ranks`` is the store's ``(n_genes, n_signatures)`` int16 ranks, ``zbits`` its float16
    z-scores viewed as uint16 and ``table`` the ``|z|`` of every bit pattern.
    """
    n_genes = ranks.shape[0]
    n_c = cols.shape[0]
    n_s = offsets.shape[0] - 1
    n_words = (n_genes + 63) // 64
    max_g = 1
    for s in range(n_s):
        max_g = max(max_g, offsets[s + 1] - offsets[s])
    n_tiles = (n_c + TILE - 1) // TILE
    for t in numba.prange(n_tiles):
        bits = np.zeros(n_words, np.uint64)
        weight = np.zeros(n_genes, np.float64)
        local = np.empty(max_g, np.int64)
        genes = np.arange(max_g)
        lo = t * TILE
        hi = min(lo + TILE, n_c)
        for s in range(n_s):
            a = offsets[s]
            g = offsets[s + 1] - a
            if g == 0:
                for i in range(lo, hi):
                    out[s, i] = np.nan
                continue
            inv_miss = 1.0 / (n_genes - g)
            for i in range(lo, hi):
                c = cols[i]
                for j in range(g):
                    row = sets[a + j]
                    r = ranks[row, c]
                    local[j] = r
                    weight[r] = table[zbits[row, c]]
                out[s, i] = es_walk(local, weight, genes[:g], bits, inv_miss)


@numba.njit(parallel=True, cache=True)
def rank_sum_kernel(ranks, cols, sets, offsets, out):
    """``out[s, i]``: the sum of the ranks (0 = highest z) of set ``s``'s genes in
    signature ``cols[i]``."""
    n_c = cols.shape[0]
    n_s = offsets.shape[0] - 1
    n_tiles = (n_c + TILE - 1) // TILE
    for t in numba.prange(n_tiles):
        lo = t * TILE
        hi = min(lo + TILE, n_c)
        for s in range(n_s):
            for i in range(lo, hi):
                c = cols[i]
                total = 0
                for j in range(offsets[s], offsets[s + 1]):
                    total += ranks[sets[j], c]
                out[s, i] = total


@numba.njit(inline="always")
def _quantile(x, n, q):
    """Linear-interpolation quantile (numpy's default) of the sorted ``x[:n]``."""
    h = (n - 1) * q
    k = int(np.floor(h))
    if k >= n - 1:
        return x[n - 1]
    return x[k] + (h - k) * (x[k + 1] - x[k])


@numba.njit(parallel=True, cache=True)
def segment_maxq(values, order, offsets, q_low, q_high, out):
    """``out[r, s]``: CMap's maximum-quantile summary of row ``r``'s values over segment
    ``s`` (items ``order[offsets[s]:offsets[s + 1]]``): the ``q_high`` or ``q_low`` quantile,
    whichever is larger in absolute value (the high one on a tie). NaN values are left out;
    NaN when none is left."""
    m = values.shape[0]
    n_seg = offsets.shape[0] - 1
    for s in numba.prange(n_seg):
        a = offsets[s]
        b = offsets[s + 1]
        buf = np.empty(max(b - a, 1), np.float64)
        for r in range(m):
            k = 0
            for t in range(a, b):
                v = values[r, order[t]]
                if not np.isnan(v):
                    buf[k] = v
                    k += 1
            if k == 0:
                out[r, s] = np.nan
                continue
            x = np.sort(buf[:k])
            low = _quantile(x, k, q_low)
            high = _quantile(x, k, q_high)
            out[r, s] = high if abs(high) >= abs(low) else low


@numba.njit(parallel=True, cache=True)
def tau_kernel(ncs, quantiles, items, levels, out):
    """``out[r, i]``: tau of ``ncs[r, i]`` against the reference of item ``items[i]``, given
    as its ``|NCS|`` quantiles ``quantiles[items[i]]`` (ascending) at percent ``levels``: the
    signed, linearly interpolated percentage of reference values below ``|ncs|``. NaN for a
    NaN score or a reference without values."""
    m, n = ncs.shape
    n_q = levels.shape[0]
    for i in numba.prange(n):
        qv = quantiles[items[i]]
        empty = np.isnan(qv[0])
        for r in range(m):
            x = ncs[r, i]
            if empty or np.isnan(x):
                out[r, i] = np.nan
                continue
            a = abs(x)
            if a == 0.0:
                out[r, i] = 0.0
                continue
            k = np.searchsorted(qv, a)  # reference quantiles strictly below |x|
            if k == 0:
                f = 0.0
            elif k == n_q:
                f = 100.0
            else:
                span = qv[k] - qv[k - 1]
                f = levels[k - 1] + (levels[k] - levels[k - 1]) * (
                    (a - qv[k - 1]) / span if span > 0 else 1.0
                )
            out[r, i] = f if x > 0 else -f


def es_from_hits(
    positions: NDArray[np.integer], weights: NDArray[np.floating], n: int
) -> NDArray[np.float64]:
    """ES of sets given by their hits, vectorized over rows (numpy).

    Parameters
    ----------
    positions
        ``(m, G)`` positions of each set's hits in its ranked list (0 = top), ascending.
    weights
        ``(m, G)`` weight of each hit (``|z|^p``), in the same order; a row of zeros weighs
        its hits equally.
    n
        Length of the ranked lists (``G < n``).

    Returns
    -------
    numpy.ndarray
        ``(m,)`` float64 ES: the running sum's deviation from 0 of largest size (a hit adds
        its share of the set's weight, a miss subtracts ``1 / (n - G)``), the negative one
        on a tie, as :func:`~l1000_assets.core.evaluation.kernels.es_walk`.
    """
    pos = np.asarray(positions, np.float64)
    w = np.asarray(weights, np.float64)
    g = pos.shape[1]
    total = w.sum(axis=1, keepdims=True)
    unit = ~(total > 0)
    w = np.where(unit, 1.0, w)
    total = np.where(unit, float(g), total)
    after = np.cumsum(w, axis=1) / total
    misses = (pos - np.arange(g)) / (n - g)
    hi = np.maximum((after - misses).max(axis=1), 0.0)
    lo = np.minimum((after - w / total - misses).min(axis=1), 0.0)
    return np.where(hi > -lo + ES_TIE_TOLERANCE, hi, lo)
