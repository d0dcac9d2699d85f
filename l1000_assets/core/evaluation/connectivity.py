"""CMap connectivity (Subramanian et al., Cell 2017): a baseline for ranking candidate profiles
against query profiles.

Connectivity of a query to a candidate profile (all over the same ``N`` genes, normally the
978 landmarks; any ``N`` from 2 to 32,767 works):

* **Query signature**: the ``k`` genes with the highest z-score (the *up* set) and the ``k``
  with the lowest (the *down* set) of the query profile; ``k = 150`` by default
  (:data:`DEFAULT_K`; CMap's own tools use 50 to 150).
* **ES** of a gene set ``S`` (``G`` genes) in a candidate: the candidate's ``N`` genes are
  ranked by its z-score, descending; a running sum walks down that list: a gene in ``S``
  (a hit) adds ``|z_g|^p / sum_{h in S} |z_h|^p`` (``z`` of the *candidate*, ``p = 1``),
  any other gene (a miss) subtracts ``1 / (N - G)``. ES is the running-sum value of largest
  absolute deviation from 0, with its sign.
* **WTCS** = ``(ES_up - ES_down) / 2`` if ``ES_up`` and ``ES_down`` have opposite signs
  (``ES_up * ES_down < 0``), else 0. It lies in [-1, 1].
* **NCS**: WTCS divided by the mean positive WTCS (positive scores) or the mean absolute
  negative WTCS (negative scores) of its (cell line, perturbagen type) group: :func:`ncs`.
* **tau**: signed percentile of ``|NCS|`` within a reference distribution: :func:`tau`.

Conventions (fixed and tested):

* **Ties in z** are ordered deterministically: a candidate's genes are ranked by descending
  z, equal z in ascending gene (column) index, as a stable sort of ``-z`` would do;
  ``-0.0`` equals ``0.0``. Query sets use the same rule: the up set is the first ``k``
  genes by descending z, the down set the first ``k`` by ascending z, ties in ascending gene
  index in both.
* **ES ties**: when the largest positive and the largest negative deviation are equal in
  size, the negative one is returned: ``ES = max if max > -min + 1e-9 else min``. Exact ties
  are common (equal z-scores, ``p = 0``); the tolerance (:data:`ES_TIE_TOLERANCE`) makes
  the choice independent of the rounding of the running sums (float64).
* **Zero weights**: if the candidate has ``|z|^p = 0`` on every gene of a set, the weights
  are undefined; the hits are then weighted equally (the unweighted KS walk).
* Inputs must be finite (``ValueError`` otherwise).

Computation. Each candidate is ranked once per call (a per-row sort of its ``N`` genes); its
ranks and weights in rank order are kept for one block of candidates only. The extremes of
a running sum are reached at a hit (maximum) or just before one (minimum), so the walk needs
only the ``G`` hits in rank order, not all ``N`` genes: a compiled kernel (numba, candidates
in parallel) marks the ranks of the set's genes in a bitmap of ``N`` bits and reads them
back in rank order, so no per-pair sort and nothing of size ``queries x candidates x N`` is
ever made. Cost is ``O(k)`` per (query, candidate) pair; memory is one block of candidate
rank tables (6 bytes per gene) and one block of float32 scores.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from l1000_assets.core.evaluation.kernels import score_kernel

DEFAULT_K = 150
"""Genes in each of the up and down sets of a query signature."""

DEFAULT_CANDIDATE_BLOCK = 4096
"""Candidates ranked and scored together (their rank tables take 6 bytes per gene)."""


_MAX_GENES = np.iinfo(np.int16).max  # ranks are stored as int16
_RANK_CHUNK = 512  # profiles sorted at a time
_REFERENCE_BLOCK = 4096  # reference scores counted at a time by NcsReference.add


# --------------------------------------------------------------------------- query sets


def query_sets(
    profiles: NDArray[np.floating], *, k: int = DEFAULT_K
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """Up and down gene sets of query profiles.

    Parameters
    ----------
    profiles
        ``(q, N)`` z-scores (one query per row), or one profile ``(N,)``.
    k
        Genes per set (default :data:`DEFAULT_K` = 150); ``2 * k <= N``.

    Returns
    -------
    up, down
        ``(q, k)`` int32 gene (column) indices: the ``k`` highest z-scores, highest first,
        and the ``k`` lowest, lowest first; equal z-scores in ascending gene index.
    """
    z = _as_profiles(profiles, "profiles")
    n = z.shape[1]
    if not 1 <= k or 2 * k > n:
        raise ValueError(f"k must be in [1, N/2] = [1, {n // 2}], got {k}")
    up = np.argsort(-z, axis=1, kind="stable")[:, :k]
    down = np.argsort(z, axis=1, kind="stable")[:, :k]
    return up.astype(np.int32), down.astype(np.int32)


# ------------------------------------------------------------------ ranked candidates


@dataclass(frozen=True)
class RankedProfiles:
    """Profiles prepared for scoring: each row's gene ranks and its weights in rank order.

    Made by :func:`rank_profiles`; accepted wherever candidates are. Worth keeping when the
    same candidates are scored against several batches of queries (a raw array is ranked
    again on every call).

    Attributes
    ----------
    ranks
        ``(c, N)`` int16: ``ranks[i, g]`` is the position of gene ``g`` in row ``i``'s
        ranking (0 = highest z).
    weights
        ``(c, N)`` float32: ``weights[i, r] = |z|^p`` of the gene at position ``r``.
    p
        The weight exponent used.
    """

    ranks: NDArray[np.int16]
    weights: NDArray[np.float32]
    p: float

    def __len__(self) -> int:
        return self.ranks.shape[0]

    @property
    def n_genes(self) -> int:
        return self.ranks.shape[1]

    def __getitem__(self, rows: slice) -> RankedProfiles:
        return RankedProfiles(self.ranks[rows], self.weights[rows], self.p)


def rank_profiles(profiles: NDArray[np.floating], *, p: float = 1.0) -> RankedProfiles:
    """Rank each profile's genes by descending z-score (ties: ascending gene index).

    Parameters
    ----------
    profiles
        ``(c, N)`` z-scores, or one profile ``(N,)``.
    p
        Weight exponent: a hit ``g`` weighs ``|z_g|^p`` (1 in CMap; 0 gives the unweighted
        Kolmogorov-Smirnov walk).

    Returns
    -------
    RankedProfiles
        ``(c, N)`` int16 ranks and float32 weights in rank order.
    """
    z = _as_profiles(profiles, "candidates")
    if not (np.isfinite(p) and p >= 0):
        raise ValueError(f"p must be finite and >= 0, got {p}")
    c, n = z.shape
    ranks = np.empty((c, n), dtype=np.int16)
    weights = np.empty((c, n), dtype=np.float32)
    positions = np.arange(n, dtype=np.int16)[None, :]
    for r0 in range(0, c, _RANK_CHUNK):  # bounds the sort's temporaries
        rows = slice(r0, min(r0 + _RANK_CHUNK, c))
        order = _descending_order(z[rows])
        np.put_along_axis(ranks[rows], order, positions, axis=1)
        np.abs(np.take_along_axis(z[rows], order, axis=1), out=weights[rows])
    if p == 0:
        weights.fill(1.0)
    elif p != 1:
        weights **= np.float32(p)
    return RankedProfiles(ranks, weights, float(p))


def _descending_order(z: np.ndarray) -> np.ndarray:
    """Per row, the gene indices by descending z, equal z in ascending index.

    Equivalent to ``np.argsort(-z, axis=1, kind="stable")``, about twice as fast: each value
    becomes a uint64 key, (order-preserving float bits, inverted) << 32 | gene index, sorted
    with numpy's vectorized unstable sort (keys are distinct, so stability is moot).
    """
    bits = (z + np.float32(0.0)).view(np.uint32)  # + 0.0 turns -0.0 into 0.0
    negative = (bits >> np.uint32(31)).astype(bool)
    ascending = np.where(negative, ~bits, bits | np.uint32(0x80000000))
    key = (~ascending).astype(np.uint64) << np.uint64(32)
    key |= np.arange(z.shape[1], dtype=np.uint64)
    key.sort(axis=1)
    return (key & np.uint64(0xFFFFFFFF)).astype(np.intp)


# ---------------------------------------------------------------------- public scoring


def enrichment_scores(
    candidates: NDArray[np.floating] | RankedProfiles,
    gene_sets: NDArray[np.integer],
    *,
    p: float = 1.0,
    candidate_block: int = DEFAULT_CANDIDATE_BLOCK,
) -> NDArray[np.float32]:
    """ES of every gene set in every candidate.

    Parameters
    ----------
    candidates
        ``(c, N)`` z-scores, or :class:`RankedProfiles`.
    gene_sets
        ``(q, G)`` integer gene indices, distinct within a row, ``1 <= G < N``.
    p
        Weight exponent (ignored for :class:`RankedProfiles`, which carry theirs).
    candidate_block
        Candidates ranked at a time.

    Returns
    -------
    numpy.ndarray
        ``(q, c)`` float32 enrichment scores in [-1, 1].
    """
    n_c, n = _candidate_shape(candidates)
    sets = _as_gene_sets(gene_sets, n, "gene_sets")
    out = np.empty((len(sets), n_c), dtype=np.float32)
    for cs, ranked in _candidate_blocks(candidates, p, candidate_block):
        block = np.empty((len(sets), cs.stop - cs.start), dtype=np.float32)
        if len(sets):
            score_kernel(ranked.ranks, ranked.weights, sets, sets, False, block)
        out[:, cs] = block
    return out


def wtcs_from_es(
    es_up: NDArray[np.floating], es_down: NDArray[np.floating]
) -> NDArray[np.floating]:
    """WTCS from enrichment scores: ``(es_up - es_down) / 2`` where their signs are
    opposite (``es_up * es_down < 0``), else 0. Shapes broadcast."""
    es_up = np.asarray(es_up)
    es_down = np.asarray(es_down)
    return np.where(es_up * es_down < 0, (es_up - es_down) / 2, 0).astype(
        np.result_type(es_up, es_down, np.float32)
    )


def iter_wtcs_blocks(
    up: NDArray[np.integer],
    down: NDArray[np.integer],
    candidates: NDArray[np.floating] | RankedProfiles,
    *,
    p: float = 1.0,
    query_block: int | None = None,
    candidate_block: int = DEFAULT_CANDIDATE_BLOCK,
) -> Iterator[tuple[slice, slice, NDArray[np.float32]]]:
    """WTCS of every query against every candidate, one block at a time.

    Candidate blocks are the outer loop (each candidate is ranked once), query blocks the
    inner one. Only one block of scores and one block of candidate rank tables are held:
    ``query_block x candidate_block`` float32 plus ``candidate_block x N x 6`` bytes.

    Parameters
    ----------
    up, down
        ``(q, k_up)`` and ``(q, k_down)`` integer gene indices per query (from
        :func:`query_sets`), distinct within a row, ``1 <= k < N``.
    candidates
        ``(c, N)`` z-scores, or :class:`RankedProfiles`.
    p
        Weight exponent (ignored for :class:`RankedProfiles`, which carry theirs).
    query_block
        Queries per yielded block; ``None``: all.
    candidate_block
        Candidates per yielded block.

    Yields
    ------
    query_slice, candidate_slice, scores
        ``scores`` is the ``(len(query_slice), len(candidate_slice))`` float32 WTCS block
        for those rows of ``up``/``down`` and rows of ``candidates``.
    """
    n_c, n = _candidate_shape(candidates)
    up = _as_gene_sets(up, n, "up")
    down = _as_gene_sets(down, n, "down")
    if len(up) != len(down):
        raise ValueError(f"up and down have {len(up)} and {len(down)} rows")
    n_q = len(up)
    qb = n_q if query_block is None else _positive(query_block, "query_block")
    if n_q == 0:
        return
    for cs, ranked in _candidate_blocks(candidates, p, candidate_block):
        for q0 in range(0, n_q, qb):
            qs = slice(q0, min(q0 + qb, n_q))
            scores = np.empty((qs.stop - qs.start, cs.stop - cs.start), dtype=np.float32)
            score_kernel(ranked.ranks, ranked.weights, up[qs], down[qs], True, scores)
            yield qs, cs, scores


def wtcs(
    up: NDArray[np.integer],
    down: NDArray[np.integer],
    candidates: NDArray[np.floating] | RankedProfiles,
    *,
    p: float = 1.0,
    candidate_block: int = DEFAULT_CANDIDATE_BLOCK,
    max_pairs: int = 50_000_000,
) -> NDArray[np.float32]:
    """The full ``(q, c)`` float32 WTCS matrix, for small cases.

    Parameters are those of :func:`iter_wtcs_blocks`; ``max_pairs`` caps ``q * c`` (the
    default is 200 MB of scores): beyond it use :func:`iter_wtcs_blocks`.

    Returns
    -------
    numpy.ndarray
        ``(q, c)`` float32 WTCS in [-1, 1].
    """
    n_c, n = _candidate_shape(candidates)
    n_q = len(np.atleast_2d(np.asarray(up)))
    if n_q * n_c > max_pairs:
        raise ValueError(
            f"{n_q} x {n_c} scores exceed max_pairs={max_pairs:,}; use iter_wtcs_blocks"
        )
    out = np.zeros((n_q, n_c), dtype=np.float32)
    for qs, cs, scores in iter_wtcs_blocks(
        up, down, candidates, p=p, candidate_block=candidate_block
    ):
        out[qs, cs] = scores
    return out


# --------------------------------------------------------------------------- NCS, tau


class NcsReference:
    """NCS's reference: per row (query) and candidate group, the mean positive and the mean
    absolute negative score, accumulated one block of reference scores at a time
    (:meth:`add`), so the reference never has to be held whole.

    Parameters
    ----------
    n_rows, n_groups
        Rows (queries) and groups (integer codes ``0 .. n_groups - 1``).
    """

    def __init__(self, n_rows: int, n_groups: int):
        self.n_groups = n_groups
        self._sums = np.zeros((n_rows, n_groups, 2))
        self._counts = np.zeros((n_rows, n_groups, 2))

    def add(self, rows: slice, scores: NDArray[np.floating], groups: NDArray[np.intp]) -> None:
        """Count the reference scores ``scores`` (``(len(rows), t)``) of the rows ``rows``
        against ``t`` candidates of groups ``groups``. Zero and NaN scores count in neither
        mean."""
        for c0 in range(0, len(groups), _REFERENCE_BLOCK):
            cols = slice(c0, c0 + _REFERENCE_BLOCK)
            g = groups[cols]
            onehot = np.zeros((len(g), self.n_groups))
            onehot[np.arange(len(g)), g] = 1.0
            block = scores[:, cols]
            pos, neg = block > 0, block < 0
            self._sums[rows, :, 0] += np.where(pos, block, 0) @ onehot
            self._sums[rows, :, 1] += np.where(neg, -block, 0) @ onehot
            self._counts[rows, :, 0] += pos @ onehot
            self._counts[rows, :, 1] += neg @ onehot

    def means(self) -> NDArray[np.float64]:
        """``(n_rows, n_groups, 2)``: mean positive and mean ``|negative|`` score; NaN where a
        group has no reference score of that sign."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._sums / self._counts


def divide_by_group_means(
    scores: NDArray[np.floating],
    means: NDArray[np.float64],
    groups: NDArray[np.intp],
    *,
    out: NDArray[np.floating] | None = None,
) -> NDArray[np.floating]:
    """WTCS to NCS: a positive score divided by the mean positive reference score of its
    row and candidate group, a negative one by the mean absolute negative; 0 and NaN stay.

    Parameters
    ----------
    scores
        ``(b, t)`` WTCS of ``b`` rows against ``t`` candidates.
    means
        ``(b, n_groups, 2)`` (or ``(1, n_groups, 2)``, shared by all rows), from
        :meth:`NcsReference.means`.
    groups
        ``(t,)`` group code of each candidate.
    out
        Where to write (may be ``scores`` itself); ``None``: a float64 copy.

    Returns
    -------
    numpy.ndarray
        ``out``: NCS, NaN where the group has no reference score of the same sign.
    """
    if out is None:
        out = np.array(scores, dtype=np.float64)
    elif out is not scores:
        out[...] = scores
    positive, negative = out > 0, out < 0
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(out, means[:, groups, 0], out=out, where=positive)
        np.divide(out, means[:, groups, 1], out=out, where=negative)
    return out


def ncs(
    scores: NDArray[np.floating],
    groups: NDArray,
    *,
    reference: NDArray[np.floating] | None = None,
    reference_groups: NDArray | None = None,
) -> NDArray[np.floating]:
    """Normalized connectivity scores.

    Along the last axis (the candidates), a positive WTCS is divided by the mean of the
    positive reference WTCS of its group, a negative one by the mean absolute value of the
    negative reference WTCS of its group; 0 stays 0 (:class:`NcsReference`,
    :func:`divide_by_group_means`). Each row (query) is normalized by its own reference
    row. Groups are meant to be (cell line, perturbagen type) pairs, e.g. labels
    ``"A375|trt_cp"``.

    Parameters
    ----------
    scores
        ``(..., n)`` WTCS (e.g. ``(q, n)``: queries by candidates, or ``(n,)``).
    groups
        ``(n,)`` group label of each candidate.
    reference, reference_groups
        ``(..., m)`` reference WTCS (same leading shape as ``scores``, or ``(m,)`` shared by
        all rows) and their ``(m,)`` group labels. ``None``: ``scores`` and ``groups``.

    Returns
    -------
    numpy.ndarray
        NCS, shaped like ``scores`` (float32 for float32 input, else float64). NaN where
        the score is NaN, or its group has no reference score of the same sign.
    """
    s = np.asarray(scores)
    dtype = np.float32 if s.dtype == np.float32 else np.float64
    s = s.astype(np.float64)
    groups = np.asarray(groups)
    if s.ndim == 0 or groups.shape != s.shape[-1:]:
        raise ValueError(f"groups {groups.shape} must match the last axis of scores {s.shape}")
    if reference is None:
        if reference_groups is not None:
            raise ValueError("reference_groups given without reference")
        ref, ref_groups = s, groups
    else:
        if reference_groups is None:
            raise ValueError("reference needs reference_groups")
        ref = np.asarray(reference, dtype=np.float64)
        ref_groups = np.asarray(reference_groups)
        if ref.ndim == 0 or ref_groups.shape != ref.shape[-1:]:
            raise ValueError(
                f"reference_groups {ref_groups.shape} must match the last axis "
                f"of reference {ref.shape}"
            )
        if ref.ndim > 1 and ref.shape[:-1] != s.shape[:-1]:
            raise ValueError(f"reference {ref.shape} and scores {s.shape} differ in leading shape")
    n = s.shape[-1]
    _, codes = np.unique(np.concatenate([groups, ref_groups]), return_inverse=True)
    codes = codes.ravel()
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    s2 = s.reshape(-1, n)
    r2 = ref.reshape(-1, ref.shape[-1])
    reference_means = NcsReference(len(r2), n_groups)
    reference_means.add(slice(None), r2, codes[n:])
    out = divide_by_group_means(s2, reference_means.means(), codes[:n], out=s2)
    return out.reshape(s.shape).astype(dtype, copy=False)


def tau(
    ncs_values: NDArray[np.floating], reference_ncs: NDArray[np.floating]
) -> NDArray[np.float64]:
    """Signed percentile of ``|NCS|`` within a reference distribution.

    ``tau = sign(ncs) * 100 * #{r in reference : |r| < |ncs|} / #reference``: the percentage
    of reference values *strictly* smaller in absolute value, signed like ``ncs``. So
    ``tau`` is in [-100, 100], ``tau(0) = 0``, and a value tied with reference values does
    not count them. NaN reference values are dropped; a NaN ``ncs`` gives NaN.

    Parameters
    ----------
    ncs_values
        NCS values, any shape.
    reference_ncs
        1-D reference NCS values (in CMap: the NCS of the same signature against a fixed
        reference set of queries).

    Returns
    -------
    numpy.ndarray
        float64 tau, shaped like ``ncs_values``.
    """
    x = np.asarray(ncs_values, dtype=np.float64)
    ref = np.abs(np.asarray(reference_ncs, dtype=np.float64).ravel())
    ref = np.sort(ref[~np.isnan(ref)])
    if len(ref) == 0:
        raise ValueError("reference_ncs has no (non-NaN) value")
    below = np.searchsorted(ref, np.abs(x), side="left")
    out = np.sign(x) * 100.0 * below / len(ref)
    return np.where(np.isnan(x), np.nan, out)


# ---------------------------------------------------------------------------- helpers


def _positive(value: int, name: str) -> int:
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _as_profiles(x: np.ndarray, name: str) -> np.ndarray:
    z = np.asarray(x, dtype=np.float32)
    if z.ndim == 1:
        z = z[None, :]
    if z.ndim != 2:
        raise ValueError(f"{name} must be (n, N), got shape {z.shape}")
    if not 2 <= z.shape[1] <= _MAX_GENES:
        raise ValueError(f"{name}: N must be in [2, {_MAX_GENES}], got {z.shape[1]}")
    if not np.isfinite(z).all():
        raise ValueError(f"{name} contain non-finite values")
    return np.ascontiguousarray(z)


def _as_gene_sets(sets: np.ndarray, n: int, name: str) -> np.ndarray:
    s = np.asarray(sets)
    if s.ndim == 1:
        s = s[None, :]
    if s.ndim != 2 or not (np.issubdtype(s.dtype, np.integer) or s.size == 0):
        raise ValueError(f"{name} must be a 2-D integer array, got {s.dtype} {s.shape}")
    if not 1 <= s.shape[1] < n:
        raise ValueError(f"{name}: set size must be in [1, N - 1] = [1, {n - 1}], got {s.shape[1]}")
    if s.size and (s.min() < 0 or s.max() >= n):
        raise ValueError(f"{name}: gene indices must be in [0, {n})")
    if s.shape[1] > 1 and (np.diff(np.sort(s, axis=1), axis=1) == 0).any():
        raise ValueError(f"{name}: gene indices repeat within a set")
    return np.ascontiguousarray(s, dtype=np.int32)


def _candidate_shape(candidates: np.ndarray | RankedProfiles) -> tuple[int, int]:
    if isinstance(candidates, RankedProfiles):
        return len(candidates), candidates.n_genes
    shape = np.shape(candidates)
    if len(shape) != 2:
        raise ValueError(f"candidates must be (c, N), got shape {shape}")
    if not 2 <= shape[1] <= _MAX_GENES:
        raise ValueError(f"candidates: N must be in [2, {_MAX_GENES}], got {shape[1]}")
    return shape[0], shape[1]


def _candidate_blocks(
    candidates: np.ndarray | RankedProfiles, p: float, block: int
) -> Iterator[tuple[slice, RankedProfiles]]:
    block = _positive(block, "candidate_block")
    n_c = len(candidates)
    for c0 in range(0, n_c, block):
        cs = slice(c0, min(c0 + block, n_c))
        if isinstance(candidates, RankedProfiles):
            part = candidates[cs]
            ranked = RankedProfiles(
                np.ascontiguousarray(part.ranks, dtype=np.int16),
                np.ascontiguousarray(part.weights, dtype=np.float32),
                part.p,
            )
        else:
            ranked = rank_profiles(candidates[cs], p=p)
        yield cs, ranked
