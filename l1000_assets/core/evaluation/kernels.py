"""Compiled (numba) kernels of the retrieval counts and the CMap scores.

* :func:`cttz`: count trailing zeros (an LLVM intrinsic), for walking bitmaps.
* :func:`es_walk` and :func:`score_kernel`: the weighted-KS enrichment walk of a query's
  gene sets over a candidate's ranks (see :mod:`~l1000_assets.core.evaluation.connectivity`).
* :func:`gather_ranges`, :func:`positives`, :func:`count_tile`, :func:`finish`: the exact
  rank-quantile counts of :mod:`~l1000_assets.core.evaluation.retrieval`.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

ES_TIE_TOLERANCE = 1e-9
"""Positive and negative ES deviations closer than this in size count as tied."""

QUERY_CHUNK = 64
"""Queries per parallel work item of the CMap kernel."""

# A bin that holds a positive carries this offset in its histogram count, so one load
# tells the counting loop both the count and whether to compare exactly.
FLAG = np.int32(-(1 << 30))


# ---------------------------------------------------------------------------- kernels


@intrinsic
def cttz(typingctx, x):
    """Count of trailing zero bits of a uint64 (LLVM ``cttz``)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@numba.njit(inline="always")
def es_walk(rank, weight, genes, bits, inv_miss):
    """ES of one gene set in one ranked candidate. ``bits`` is all-zero scratch (left so).

    Hits are marked in a bitmap over rank positions, then read back in rank order. The
    running sum after hit ``j`` (0-based) at position ``r`` is ``W_j / W - (r - j) / (N - G)``
    (``W_j`` the hit weight so far, ``r - j`` the misses so far); its maximum is at a hit and
    its minimum just before one (or at the start), so only hits are visited.
    """
    total = 0.0
    for j in range(genes.shape[0]):
        r = rank[genes[j]]
        bits[r >> 6] |= np.uint64(1) << np.uint64(r & 63)
        total += weight[r]
    unit = not total > 0.0  # all weights zero: weigh hits equally
    inv_total = 1.0 / genes.shape[0] if unit else 1.0 / total
    acc = 0.0
    hi = 0.0
    lo = 0.0
    j = 0
    for i in range(bits.shape[0]):
        b = bits[i]
        bits[i] = 0
        base = i * 64
        while b:
            r = base + np.int64(cttz(b))
            b &= b - np.uint64(1)
            miss = (r - j) * inv_miss
            lo = min(lo, acc * inv_total - miss)  # just before this hit
            acc += 1.0 if unit else weight[r]
            hi = max(hi, acc * inv_total - miss)  # at this hit
            j += 1
    return hi if hi > -lo + ES_TIE_TOLERANCE else lo


@numba.njit(parallel=True, cache=True)
def score_kernel(ranks, weights, up, down, pair, out):
    """``out[q, c]``: WTCS of query ``q`` (sets ``up[q]``, ``down[q]``) and candidate ``c``
    if ``pair``, else ES of ``up[q]`` in candidate ``c`` (``down`` unused). One kernel for
    both, so one compilation."""
    n_c, n = ranks.shape
    n_q = up.shape[0]
    n_words = (n + 63) // 64
    inv_up = 1.0 / (n - up.shape[1])
    inv_down = 1.0 / (n - down.shape[1])
    n_chunks = (n_q + QUERY_CHUNK - 1) // QUERY_CHUNK
    for item in numba.prange(n_c * n_chunks):
        c = item // n_chunks
        q0 = (item % n_chunks) * QUERY_CHUNK
        bits = np.zeros(n_words, np.uint64)
        rank = ranks[c]
        weight = weights[c]
        for q in range(q0, min(q0 + QUERY_CHUNK, n_q)):
            es_up = es_walk(rank, weight, up[q], bits, inv_up)
            if not pair:
                out[q, c] = es_up
                continue
            es_down = es_walk(rank, weight, down[q], bits, inv_down)
            out[q, c] = (es_up - es_down) * 0.5 if es_up * es_down < 0.0 else 0.0


@numba.njit(inline="always")
def bin_of(v, smin, scale, n_bins):
    x = min(max((v - smin) * scale, np.float32(0.0)), np.float32(n_bins - 1))
    return np.int32(x)


@numba.njit(nogil=True, cache=True)
def gather_ranges(s, c0, lo, hi, full_off, flat):
    """Each row's scores over its own label range ``[lo, hi)``, concatenated."""
    for i in range(len(lo)):
        for j in range(lo[i], hi[i]):
            flat[full_off[i] + j - lo[i]] = s[i, j - c0]


@numba.njit(nogil=True, cache=True)
def positives(
    flat,
    full_off,
    lo,
    hi,
    self_pos,
    offsets,
    lower,
    scale,
    n_bins,
    pos_val,
    pos_bin,
    pos_order,
    row_min,
    bin_first,
    bin_last,
    hist,
):
    """Scores and bins of each row's positives (its range's scores in ``flat``, the query
    itself left out), grouped by bin:
    ``pos_order[offsets[i] + bin_first[i, k] : offsets[i] + bin_last[i, k]]``; and each
    row's lowest positive score."""
    for i in range(len(offsets) - 1):
        o = offsets[i]
        k = 0
        for j in range(lo[i], hi[i]):
            if j != self_pos[i]:
                v = flat[full_off[i] + j - lo[i]]
                pos_val[o + k] = v
                pos_bin[o + k] = bin_of(v, lower[i], scale[i], n_bins)
                row_min[i] = min(row_min[i], v)
                k += 1
        order = np.argsort(pos_bin[o : o + k], kind="mergesort")
        for t in range(k):
            m = order[t]
            pos_order[o + t] = o + m
            bb = pos_bin[o + m]
            if bin_first[i, bb] < 0:
                bin_first[i, bb] = t
                hist[i, bb] = FLAG
            bin_last[i, bb] = t + 1


@numba.njit(nogil=True, cache=True)
def count_tile(
    s,
    c0,
    lo,
    hi,
    self_pos,
    offsets,
    lower,
    scale,
    n_bins,
    row_min,
    pos_val,
    pos_order,
    bin_first,
    bin_last,
    hist,
    greater,
    equal,
):
    """Count the negatives of each row of the tile ``s`` (candidates ``c0 ..``).

    Per row, 64 candidates at a time, a pass the compiler vectorizes builds a bit mask of
    the negatives not below the row's lowest positive (a lower one is above no positive).
    Only the set bits are visited: each such negative goes into the row's histogram and is
    compared exactly with the positives of its bin when the bin holds any (flagged bins).
    (A branch per negative instead of the mask was measured 2x slower: it is mispredicted.)"""
    b, t = s.shape
    one = np.uint64(1)
    for i in range(b):
        row = s[i]
        h = hist[i]
        o = offsets[i]
        smin, sc, vmin = lower[i], scale[i], row_min[i]
        left = min(max(lo[i] - c0, 0), t)
        right = min(max(hi[i] - c0, 0), t)
        for part in range(2):
            seg = row[0:left] if part == 0 else row[right:t]
            n = seg.shape[0]
            for base in range(0, n, 64):
                mask = np.uint64(0)
                if base + 64 <= n:
                    for u in range(64):
                        mask |= np.uint64(seg[base + u] >= vmin) << np.uint64(u)
                else:
                    for u in range(n - base):
                        mask |= np.uint64(seg[base + u] >= vmin) << np.uint64(u)
                while mask:
                    v = seg[base + cttz(mask)]
                    mask &= mask - one
                    bb = bin_of(v, smin, sc, n_bins)
                    count = h[bb] + 1
                    h[bb] = count
                    if count < 0:  # a flagged bin: compare with its positives exactly
                        for w in range(o + bin_first[i, bb], o + bin_last[i, bb]):
                            m = pos_order[w]
                            if v > pos_val[m]:
                                greater[m] += 1
                            elif v == pos_val[m]:
                                equal[m] += 1
        sp = self_pos[i] - c0
        if 0 <= sp < t and not (left <= sp < right):  # the query itself is no negative
            v = row[sp]
            if v >= vmin:
                bb = bin_of(v, smin, sc, n_bins)
                h[bb] -= 1
                if h[bb] < 0:
                    for w in range(o + bin_first[i, bb], o + bin_last[i, bb]):
                        m = pos_order[w]
                        if v > pos_val[m]:
                            greater[m] -= 1
                        elif v == pos_val[m]:
                            equal[m] -= 1


@numba.njit(nogil=True, cache=True)
def finish(hist, pos_bin, offsets, greater):
    """Add the negatives in bins above each positive's bin."""
    b, n_bins = hist.shape
    above_bin = np.zeros(n_bins + 1, np.int64)
    for i in range(b):
        acc = 0
        for bb in range(n_bins - 1, -1, -1):
            above_bin[bb + 1] = acc
            count = hist[i, bb]
            acc += count - FLAG if count < 0 else count
        above_bin[0] = acc
        for m in range(offsets[i], offsets[i + 1]):
            greater[m] += above_bin[pos_bin[m] + 1]
