"""Retrieval evaluation at scale: exact rank quantiles without sorting rows or holding a
row of scores, and the paper's sampled mode.

For each query (a row of ``queries``) the candidates with the same label are its positives
(the query itself excluded) and all others its negatives. The rank quantile of a positive
with score ``p`` is ``(#negatives > p + 0.5 #negatives == p) / #negatives``.

**Exact mode.** Candidates are put in label order, so each query's positives are one
contiguous range, and queries are taken in label order, so one block of queries has its
positives inside one short span of candidates. That span is scored first: it gives every
positive's score, and a histogram bin for each. Then the remaining candidates are scored
one tile at a time (``block_size x candidate_block`` scores, the only scores held) and
counted by one compiled pass per row (numba): each negative score goes into one of
``n_bins`` bins (monotone in the score, so a negative in a higher bin than a positive is
higher), and only negatives that share a bin with a positive are compared with it exactly.
Counts are exact, ties included (for equal computed scores: two scores of identical
vectors that two BLAS kernels round differently in the last bit are not a tie). Memory is
``O(block_size x (candidate_block + n_bins))`` plus the positives: independent of the number
of candidates. Blocks of queries run on
``n_threads`` threads, each with single-threaded BLAS, so a tile is counted while it is
still in the core's cache.

**Sampled mode** (the paper's): every positive of a query is kept; negatives are
``n_sampled`` candidates drawn without replacement from its negatives, by a generator
seeded with ``(seed, query index)``: the same result for any block size or thread count.

**MCC** as the paper computes it: every positive is paired with one negative of the same
query, drawn by a generator seeded with ``(seed, query index)`` (in sampled mode, among the
sampled negatives), so positives and negatives are balanced; their scores are returned
with the quantiles, and :func:`balanced_mcc` thresholds the pooled pairs (over queries, and
over splits by the caller) at their median. Over all pairs, where positives are well under
1%, MCC could not exceed a few hundredths and would not be the paper's quantity.

**Similarities**: ``cosine``, ``euclidean`` (negated squared distance), ``wtcs`` (CMap's
weighted connectivity score of the query's top and bottom genes against the candidate
profile: :mod:`l1000_assets.core.evaluation.connectivity`) and, for compounds, ``tanimoto``
(vectors: unpacked 0/1 fingerprint bits; the intersections are one matrix product, exact in
float32, so ties are exact ties) and ``combo`` (the paper's: the unweighted mean of the
embedding's cosine and the Tanimoto; vectors: the embedding followed by the
:data:`FINGERPRINT_BITS` bits).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from l1000_assets.core.embeddings.vectors import normalize_rows
from l1000_assets.core.evaluation.kernels import (
    count_tile,
    finish,
    gather_ranges,
    positives,
)
from l1000_assets.core.evaluation.metrics import RetrievalSummary

METRICS = ("cosine", "euclidean", "wtcs", "ncs", "tanimoto", "combo")
_CONNECTIVITY = ("wtcs", "ncs")
_STRUCTURE = ("tanimoto", "combo")
FINGERPRINT_BITS = 2048
"""Bits of a fingerprint (ECFP4, 2,048 bits): the last columns of ``combo`` vectors."""


@dataclass(frozen=True)
class RetrievalResult:
    """Quantiles of every positive, the query each belongs to, and each positive's score
    beside the score of the negative it is paired with (for :func:`balanced_mcc`)."""

    quantiles: NDArray[np.float64]  # (n_positives,)
    query_index: NDArray[np.int64]  # (n_positives,), in the caller's query order
    n_queries: int
    positive_scores: NDArray[np.float32]  # (n_positives,)
    negative_scores: NDArray[np.float32]  # (n_positives,): a seeded negative of the query

    @property
    def mcc(self) -> float:
        return balanced_mcc(self.positive_scores, self.negative_scores)

    def summary(self, mask: NDArray[np.bool_] | None = None) -> RetrievalSummary:
        """Pooled metrics, optionally over the positives of the queries in ``mask``."""
        q = self.quantiles if mask is None else self.quantiles[mask[self.query_index]]
        n = self.n_queries if mask is None else int(mask.sum())
        return RetrievalSummary.from_quantiles(q, n)


def mcc(tp: float, fp: float, tn: float, fn: float) -> float:
    """Matthews correlation coefficient of a confusion matrix (0 when undefined)."""
    tp, fp, tn, fn = (float(v) for v in (tp, fp, tn, fn))
    den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / den if den else 0.0


def balanced_mcc(
    positive_scores: NDArray[np.floating], negative_scores: NDArray[np.floating]
) -> float:
    """The paper's MCC: positives and as many negatives (each positive's paired negative),
    pooled, called "same" when their score is above the median of the pooled scores.

    NaN without pairs. For normally distributed scores it is about
    ``2 Phi(Phi^-1(AUC) / sqrt 2) - 1`` (``../shared/docs/science.md``, section 3).
    """
    pos = np.asarray(positive_scores, np.float64)
    neg = np.asarray(negative_scores, np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    threshold = np.median(np.concatenate([pos, neg]))
    tp = int((pos > threshold).sum())
    fp = int((neg > threshold).sum())
    return mcc(tp, fp, len(neg) - fp, len(pos) - tp)


# ------------------------------------------------------------------------- scoring


class _Scorer:
    """Scores of query rows against a range of candidates, candidates taken in ``order``
    (label order in :func:`retrieval`): one copy of them for vectors (normalized in
    place); for profiles (WTCS, NCS) no copy, each tile gathered when it is scored."""

    def __init__(
        self,
        queries,
        candidates,
        metric: str,
        wtcs_k: int,
        candidate_groups: np.ndarray | None = None,
        order: np.ndarray | None = None,
    ):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
        self.metric = metric
        self.q_sq = self.c_sq = self.group = self.norm = None
        n_c = len(candidates)
        self.order = np.arange(n_c) if order is None else np.asarray(order)
        if metric in _CONNECTIVITY:
            from l1000_assets.core.evaluation.connectivity import query_sets

            self.up, self.down = query_sets(np.asarray(queries, dtype=np.float32), k=wtcs_k)
            self.q = None
            self.c = np.asarray(candidates, dtype=np.float32)
            self.n_queries = len(self.up)
            if metric == "ncs":
                if candidate_groups is None or len(candidate_groups) != n_c:
                    raise ValueError(
                        "ncs needs one candidate_groups label per candidate "
                        "(e.g. cell line|perturbagen type)"
                    )
                _, self.group = np.unique(np.asarray(candidate_groups), return_inverse=True)
                self.norm = self._ncs_reference()
        else:
            self.q = _prepare(queries, metric)
            self.c = _prepare(candidates, metric, order)
            self.order = None  # self.c is already in order
            self.n_queries = len(self.q)
            if metric == "euclidean":
                self.q_sq = (self.q * self.q).sum(axis=1)
                self.c_sq = (self.c * self.c).sum(axis=1)
            if metric in _STRUCTURE:  # bits on, for the Tanimoto's union
                self.q_sq = self.q[:, -FINGERPRINT_BITS:].sum(axis=1)
                self.c_sq = self.c[:, -FINGERPRINT_BITS:].sum(axis=1)

    def __len__(self) -> int:
        return len(self.c)

    def _rows_of(self, cols):
        """Candidate rows (of ``self.c``) for positions ``cols`` of the order."""
        return cols if self.order is None else self.order[cols]

    def _ncs_reference(self) -> NDArray[np.float64]:
        """Per query and candidate group: mean positive WTCS and mean |negative| WTCS
        over the candidates (CMap's NCS reference is the candidate set itself here).
        ``(n_q, n_groups, 2)``; NaN where a group has no score of that sign."""
        from l1000_assets.core.evaluation.connectivity import NcsReference, iter_wtcs_blocks

        n_groups = int(self.group.max()) + 1 if len(self.group) else 0
        reference = NcsReference(self.n_queries, n_groups)
        for qs, cs, block in iter_wtcs_blocks(self.up, self.down, self.c, query_block=1024):
            reference.add(qs, block, self.group[cs])
        return reference.means()

    def bounds(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per query row, a range holding every possible score (bins are laid over it;
        scores outside it still count exactly, in the edge bins)."""
        n = len(rows)
        if self.metric == "euclidean":
            c_max = float(np.sqrt(self.c_sq.max())) if len(self.c_sq) else 0.0
            reach = (np.sqrt(self.q_sq[rows]) + c_max) ** 2
            return (-1.0001 * reach - 1e-6).astype(np.float32), np.full(n, 1e-6, np.float32)
        if self.metric == "ncs":  # |NCS| is at most 1 / (smallest group mean)
            with np.errstate(divide="ignore"):
                reach = np.nan_to_num(
                    1.0 / np.nanmin(self.norm[rows], axis=(1, 2)), nan=1.0, posinf=1.0
                )
            reach = np.maximum(reach, 1.0) * 1.0001 + 1e-6
            return (-reach).astype(np.float32), reach.astype(np.float32)
        return np.full(n, -1.0001, np.float32), np.full(n, 1.0001, np.float32)

    def query_rows(self, rows: np.ndarray):
        """What :meth:`scores` needs of these queries (gathered once per block)."""
        if self.metric in _CONNECTIVITY:
            return self.up[rows], self.down[rows]
        return np.ascontiguousarray(self.q[rows])

    def scores(
        self, queries, rows: np.ndarray, c0: int, c1: int, out: np.ndarray | None = None
    ) -> np.ndarray:
        """``(len(rows), c1 - c0)`` float32 similarities (into ``out`` when given)."""
        if self.metric in _CONNECTIVITY:
            from l1000_assets.core.evaluation.connectivity import iter_wtcs_blocks

            up, down = queries
            out = np.empty((len(rows), c1 - c0), np.float32) if out is None else out
            cols = self._rows_of(slice(c0, c1))
            for qs, cs, block in iter_wtcs_blocks(up, down, self.c[cols], candidate_block=c1 - c0):
                out[qs, cs] = block
            if self.metric == "ncs":
                self._normalize(out, rows, self.group[cols])
            return out
        if self.metric in _STRUCTURE:
            return _structure_scores(
                queries, self.c[c0:c1], self.q_sq[rows], self.c_sq[c0:c1], self.metric, out
            )
        s = np.matmul(queries, self.c[c0:c1].T, out=out)
        if self.metric == "euclidean":  # negated squared distance: larger is more similar
            s *= 2.0
            s -= self.c_sq[None, c0:c1]
            s -= self.q_sq[rows][:, None]
        return s

    def _normalize(self, out: NDArray[np.float32], rows, groups: NDArray[np.intp]) -> None:
        """WTCS to NCS in place: divide by the query's mean same-sign score in the
        candidate's group; where there is no such reference, 0 (no evidence)."""
        from l1000_assets.core.evaluation.connectivity import divide_by_group_means

        divide_by_group_means(out, self.norm[rows], groups, out=out)
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def range_scores(
        self, rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, full_off: np.ndarray
    ) -> np.ndarray:
        """Each query's scores over its own candidate positions ``[lo, hi)``,
        concatenated (``full_off`` are the offsets)."""
        flat = np.empty(full_off[-1], np.float32)
        for i, row in enumerate(rows):
            if hi[i] > lo[i]:
                cols = np.arange(lo[i], hi[i])
                if self.metric in _CONNECTIVITY:
                    flat[full_off[i] : full_off[i + 1]] = self.block_scores(np.array([row]), cols)[
                        0
                    ]
                else:
                    flat[full_off[i] : full_off[i + 1]] = self.pair_scores(int(row), cols)
        return flat

    def block_scores(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """WTCS/NCS of the queries ``rows`` against the candidates at positions ``cols``."""
        from l1000_assets.core.evaluation.connectivity import wtcs

        cand = self._rows_of(cols)
        out = wtcs(self.up[rows], self.down[rows], self.c[cand])
        if self.metric == "ncs":
            self._normalize(out, rows, self.group[cand])
        return out

    def pair_scores(self, row: int, cols: np.ndarray) -> np.ndarray:
        """Similarities of one query with the candidates ``cols`` (sampled mode)."""
        if self.metric in _CONNECTIVITY:
            return self.block_scores(np.array([row]), cols)[0]
        if self.metric in _STRUCTURE:
            return _structure_scores(
                self.q[row : row + 1],
                self.c[cols],
                self.q_sq[row : row + 1],
                self.c_sq[cols],
                self.metric,
            )[0]
        s = self.c[cols] @ self.q[row]
        if self.metric == "euclidean":
            s = 2.0 * s - self.c_sq[cols] - self.q_sq[row]
        return s.astype(np.float32, copy=False)


def _structure_scores(q, c, q_on, c_on, metric: str, out=None) -> NDArray[np.float32]:
    """Tanimoto (or combo) of query rows against candidate rows (see :func:`_prepare`)."""
    bits = slice(q.shape[1] - FINGERPRINT_BITS, None)
    inter = np.matmul(q[:, bits], c[:, bits].T, out=out)  # exact: integer counts
    union = q_on[:, None] + c_on[None, :] - inter
    np.divide(inter, union, out=inter, where=union > 0)
    inter[union <= 0] = 0.0
    if metric == "combo":
        embedding = slice(0, q.shape[1] - FINGERPRINT_BITS)
        inter += q[:, embedding] @ c[:, embedding].T
        inter *= 0.5
    return inter


def _prepare(
    x: NDArray[np.floating], metric: str, order: NDArray[np.intp] | None = None
) -> NDArray[np.float32]:
    """A float32 copy of the vectors (rows in ``order``), unit length for cosine (for
    ``combo``, the embedding part; its last :data:`FINGERPRINT_BITS` columns are 0/1 bits,
    as ``tanimoto``'s are all its columns)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {x.shape}")
    if metric in _STRUCTURE:
        width = FINGERPRINT_BITS + (1 if metric == "combo" else 0)
        if x.shape[1] < width or (metric == "tanimoto" and x.shape[1] != FINGERPRINT_BITS):
            raise ValueError(
                f"{metric} needs {'d + ' if metric == 'combo' else ''}{FINGERPRINT_BITS} "
                f"columns (fingerprint bits last), got {x.shape[1]}"
            )
    x = x[order] if order is not None else x.copy()
    if metric == "cosine":  # in place: no second (n, d) copy
        normalize_rows(x, out=x)
    if metric == "combo":
        x[:, :-FINGERPRINT_BITS] = normalize_rows(x[:, :-FINGERPRINT_BITS])
    return x


def _label_ranges(candidate_labels: np.ndarray):
    """Candidates ordered by label; for every label its [start, stop) in that order.

    One stable argsort and one sorted copy of the labels (no ``np.unique`` temporaries)."""
    order = np.argsort(candidate_labels, kind="stable")
    ordered = candidate_labels[order]
    if len(ordered) == 0:
        return ordered, order, np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1])
    stops = np.append(starts[1:], len(ordered))
    codes = ordered[starts]
    del ordered
    return codes, order, starts, stops


# ------------------------------------------------------------------------ retrieval


def retrieval(
    queries: NDArray[np.floating],
    query_labels: NDArray,
    candidates: NDArray[np.floating],
    candidate_labels: NDArray,
    *,
    metric: str = "cosine",
    self_index: NDArray[np.integer] | None = None,
    mode: str = "exact",
    n_sampled: int = 10_000,
    seed: int = 0,
    block_size: int = 256,
    candidate_block: int = 2048,
    n_bins: int = 1024,
    n_threads: int | None = None,
    wtcs_k: int = 150,
    candidate_groups: NDArray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RetrievalResult:
    """Rank quantiles of same-label candidates for every query.

    Parameters
    ----------
    queries, candidates
        ``(n_q, d)`` and ``(n_c, d)`` vectors (profiles or embeddings; for ``wtcs``,
        landmark z-score profiles).
    query_labels, candidate_labels
        Labels defining positives (equal) and negatives (different).
    metric
        ``"cosine"``, ``"euclidean"`` (negated squared distance), ``"wtcs"`` or
        ``"ncs"`` (WTCS normalized within candidate groups).
    self_index
        For each query, the row of the same item among the candidates (excluded from
        positives and negatives), or -1. ``None``: no query is among the candidates.
    mode
        ``"exact"`` or ``"sampled"`` (``n_sampled`` random negatives per query, seeded).
    block_size, candidate_block
        Queries and candidates per scored tile (exact mode).
    n_bins
        Histogram bins per query (exact mode); any value gives the same, exact result.
    n_threads
        Threads over blocks of queries (default: the CPUs available).
    wtcs_k
        Top and bottom genes of each query (``wtcs``/``ncs``; CMap uses 50 to 150).
    candidate_groups
        ``ncs`` only: each candidate's group, e.g. ``"A375|trt_cp"`` (cell line and
        perturbagen type). A WTCS is divided by the query's mean WTCS of the same sign
        over the candidates of that group.
    progress
        Called with (queries done, queries) after each block.
    """
    query_labels = np.asarray(query_labels)
    candidate_labels = np.asarray(candidate_labels)
    if len(query_labels) != len(queries) or len(candidate_labels) != len(candidates):
        raise ValueError(
            f"{len(queries)} queries with {len(query_labels)} labels, "
            f"{len(candidates)} candidates with {len(candidate_labels)} labels"
        )
    # Candidates in label order: each query's positives are one contiguous range.
    codes, order, starts, stops = _label_ranges(candidate_labels)
    scorer = _Scorer(queries, candidates, metric, wtcs_k, candidate_groups, order=order)
    n_q, n_c = scorer.n_queries, len(scorer)
    if self_index is None:
        self_index = np.full(n_q, -1, dtype=np.int64)
    self_index = np.asarray(self_index, dtype=np.int64)
    if block_size < 1 or candidate_block < 1 or n_bins < 1:
        raise ValueError("block_size, candidate_block and n_bins must be positive")
    if mode not in ("exact", "sampled"):
        raise ValueError(f"mode must be 'exact' or 'sampled', not {mode!r}")

    position = np.empty(n_c, dtype=np.int64)
    position[order] = np.arange(n_c)
    self_pos = np.where(self_index >= 0, position[np.maximum(self_index, 0)], -1)
    code = np.searchsorted(codes, query_labels)
    safe = np.minimum(code, max(len(codes) - 1, 0))
    known = (
        (code < len(codes)) & (codes[safe] == query_labels) if len(codes) else np.zeros(n_q, bool)
    )
    lo = np.where(known, starts[safe] if len(codes) else 0, 0).astype(np.int64)
    hi = np.where(known, stops[safe] if len(codes) else 0, 0).astype(np.int64)

    # Queries in label order: a block's positives lie in one short span of candidates.
    query_order = np.lexsort((np.arange(n_q), lo))
    blocks = [query_order[b0 : b0 + block_size] for b0 in range(0, n_q, block_size)]
    if mode == "exact":

        def work(rows):
            return _exact_block(
                scorer, rows, lo[rows], hi[rows], self_pos[rows], candidate_block, n_bins, seed
            )

    else:

        def work(rows):
            return _sampled_block(scorer, rows, lo[rows], hi[rows], self_pos[rows], n_sampled, seed)

    threads = max(1, n_threads or len(os.sched_getaffinity(0)))
    if metric in _CONNECTIVITY or mode == "sampled":
        threads = 1  # the WTCS kernel and the sampled gathers run their own parallel code
    parts = []
    done = 0
    for part in _run_blocks(work, blocks, threads):
        parts.append(part)
        done += 1
        if progress is not None:
            progress(min(done * block_size, n_q), n_q)
    if parts:
        q_all, o_all, p_all, n_all = (np.concatenate(x) for x in zip(*parts))
        back = np.argsort(o_all, kind="stable")  # positives grouped by query, caller order
        q_all, o_all, p_all, n_all = q_all[back], o_all[back], p_all[back], n_all[back]
    else:
        q_all, o_all = np.empty(0), np.empty(0, np.int64)
        p_all = n_all = np.empty(0, np.float32)
    return RetrievalResult(
        quantiles=q_all,
        query_index=o_all,
        n_queries=n_q,
        positive_scores=p_all,
        negative_scores=n_all,
    )


def _run_blocks(work, blocks, threads):
    """``work(block)`` for each block, in order, on ``threads`` threads with
    single-threaded BLAS (each thread multiplies and counts its own tiles)."""
    if threads == 1 or len(blocks) <= 1:
        for rows in blocks:
            yield work(rows)
        return
    from threadpoolctl import threadpool_limits

    with (
        threadpool_limits(limits=1, user_api="blas"),
        ThreadPoolExecutor(max_workers=threads) as pool,
    ):
        pending = []
        for rows in blocks:
            pending.append(pool.submit(work, rows))
            if len(pending) >= 2 * threads:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


# Longest span of candidates scored as one tile to find a block's positives (see
# _exact_block); beyond it each query's range is scored on its own.
DENSE_SPAN = 4096


def _negative_positions(rng, k: int, n_neg: int, start: int, stop: int, self_pos: int):
    """``k`` candidate positions drawn from ``range(n_neg)`` onto the candidates outside the
    query's label range ``[start, stop)`` and other than the query itself."""
    width = stop - start
    self_outside = self_pos >= 0 and not (start <= self_pos < stop)
    picks = rng.integers(0, n_neg, k)
    if self_outside:
        reduced = self_pos if self_pos < start else self_pos - width
        picks = picks + (picks >= reduced)
    return np.where(picks < start, picks, picks + width)


def _paired_negatives(scorer, rows, lo, hi, self_pos, n_pos, n_neg, seed):
    """One negative score for every positive of each row (rows without negatives: none),
    drawn with replacement by a generator seeded with ``(seed, query)``."""
    out = []
    for i, row in enumerate(rows):
        if n_pos[i] == 0 or n_neg[i] <= 0:
            out.append(np.full(n_pos[i], np.nan, np.float32))
            continue
        rng = np.random.default_rng([seed, int(row), 1])
        cols = _negative_positions(rng, int(n_pos[i]), int(n_neg[i]), lo[i], hi[i], self_pos[i])
        out.append(scorer.pair_scores(int(row), cols))
    return np.concatenate(out) if out else np.empty(0, np.float32)


def _exact_block(scorer, rows, lo, hi, self_pos, candidate_block, n_bins, seed):
    b = len(rows)
    n_c = len(scorer)
    has_range = hi > lo
    span0 = int(lo[has_range].min()) if has_range.any() else 0
    span1 = int(hi[has_range].max()) if has_range.any() else 0
    n_pos = hi - lo - ((self_pos >= lo) & (self_pos < hi))
    offsets = np.concatenate([[0], np.cumsum(n_pos)]).astype(np.int64)
    lower, upper = scorer.bounds(rows)
    scale = (n_bins / ((upper - lower) * 1.0001)).astype(np.float32)
    n_entries = int(offsets[-1])
    pos_val = np.empty(n_entries, np.float32)
    pos_bin = np.empty(n_entries, np.int32)
    pos_order = np.empty(n_entries, np.int64)
    bin_first = np.full((b, n_bins), -1, np.int32)
    bin_last = np.full((b, n_bins), -1, np.int32)
    hist = np.zeros((b, n_bins), np.int32)
    greater = np.zeros(n_entries, np.int64)
    equal = np.zeros(n_entries, np.int64)
    row_min = np.full(b, np.inf, np.float32)  # each row's lowest positive score
    queries = scorer.query_rows(rows)
    buffer = np.empty(b * min(candidate_block, max(n_c, 1)), np.float32)
    # 1. Every positive's score. Queries come in label order, so usually one short span
    #    of candidates holds all positives of the block: score it as one tile (the same
    #    BLAS kernel as the other tiles, so ties with negatives are seen) and count its
    #    negatives too. Queries spread over many labels (few queries, many candidates)
    #    would make that span long: then each query's own range is scored on its own.
    full_off = np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64)
    dense = scorer.metric not in _CONNECTIVITY and span1 - span0 <= max(
        2 * candidate_block, DENSE_SPAN
    )
    if dense and span1 > span0:
        s = scorer.scores(queries, rows, span0, span1)
        flat = np.empty(full_off[-1], np.float32)
        gather_ranges(s, span0, lo, hi, full_off, flat)
    else:
        flat = scorer.range_scores(rows, lo, hi, full_off)
    positives(
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
    )
    if dense and span1 > span0:
        count_tile(
            s,
            span0,
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
        )
        ranges = ((0, span0), (span1, n_c))
    else:
        ranges = ((0, n_c),)
    # 2. Every other candidate, one tile at a time (a row's own range is skipped).
    for a, z in ranges:
        for c0 in range(a, z, candidate_block):
            c1 = min(c0 + candidate_block, z)
            s = scorer.scores(
                queries, rows, c0, c1, out=buffer[: b * (c1 - c0)].reshape(b, c1 - c0)
            )
            count_tile(
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
            )
    finish(hist, pos_bin, offsets, greater)
    self_neg = (self_pos >= 0) & ~((self_pos >= lo) & (self_pos < hi))
    n_neg = n_c - (hi - lo) - self_neg
    owner = np.repeat(np.arange(b), n_pos)
    q = (greater + 0.5 * equal) / np.maximum(n_neg[owner], 1)
    keep = n_neg[owner] > 0
    negatives = _paired_negatives(scorer, rows, lo, hi, self_pos, n_pos, n_neg, seed)
    return q[keep], rows[owner[keep]], pos_val[keep], negatives[keep]


def _sampled_block(scorer, rows, lo, hi, self_pos, n_sampled, seed):
    n_c = len(scorer)
    out_q, out_rows, out_pos, out_neg = [], [], [], []
    for i, row in enumerate(rows):
        start, stop, sp = int(lo[i]), int(hi[i]), int(self_pos[i])
        pos = np.arange(start, stop)
        pos = pos[pos != sp]
        self_outside = sp >= 0 and not (start <= sp < stop)
        n_neg = n_c - (stop - start) - int(self_outside)
        if n_neg <= 0 or len(pos) == 0:
            continue
        rng = np.random.default_rng([seed, int(row)])
        k = rng.choice(n_neg, min(n_sampled, n_neg), replace=False)
        if self_outside:
            k = k + (k >= (sp if sp < start else sp - (stop - start)))
        neg = np.where(k < start, k, k + (stop - start))
        ps = scorer.pair_scores(int(row), pos)
        ns = np.sort(scorer.pair_scores(int(row), neg))
        below_eq = np.searchsorted(ns, ps, side="right")
        below = np.searchsorted(ns, ps, side="left")
        out_q.append(((len(ns) - below_eq) + 0.5 * (below_eq - below)) / len(ns))
        out_rows.append(np.full(len(ps), row, dtype=np.int64))
        out_pos.append(ps)
        pair = np.random.default_rng([seed, int(row), 1]).integers(0, len(ns), len(ps))
        out_neg.append(ns[pair])
    if not out_q:
        return np.empty(0), np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.float32)
    return tuple(np.concatenate(x) for x in (out_q, out_rows, out_pos, out_neg))
