"""Scores of gene-set queries against the signature store: WTCS, NCS, tau, SigCom's rank
test, and their summaries per perturbagen and cell line.

* **WTCS** (CMap, Subramanian et al. 2017): ``(ES_up - ES_down) / 2`` when the two
  enrichment scores have opposite signs, else 0
  (:func:`~l1000_assets.core.evaluation.connectivity.wtcs_from_es`); a query with only an up
  set scores ``ES_up``, one with only a down set ``-ES_down``. The ES is CMap's weighted
  Kolmogorov-Smirnov walk over the signature's genes ranked by z-score, hits weighted by
  ``|z|`` (:func:`~l1000_assets.core.connectivity.kernels.es_kernel`).
* **NCS**: WTCS divided by the mean positive (or mean absolute negative) WTCS of the same
  query over the signatures of the same cell line and perturbagen type
  (:class:`~l1000_assets.core.evaluation.connectivity.NcsReference`).
* **tau**: the signed percentage of the reference's ``|NCS|`` for that signature (or
  perturbagen, or perturbagen and cell line) below the query's ``|NCS|``
  (:mod:`~l1000_assets.core.connectivity.reference`).
* **Rank test** (SigCom LINCS, Evangelista et al. 2022): per set, the Mann-Whitney U of the
  set's ranks against the other genes', as a normal z-score (positive: the set's genes rank
  high) with its two-sided p-value; ``z_sum = z_up - z_down`` ranks mimickers (positive)
  and reversers (negative), and Benjamini-Hochberg FDRs are over the signatures scored.
* **Summaries** as CMap reports them: a perturbagen's signatures in one cell line (its doses
  and times) are summarized by the maximum-quantile statistic (the 67th or the 33rd
  percentile, whichever is larger in absolute value), and its cell lines the same way
  (:func:`~l1000_assets.core.connectivity.kernels.segment_maxq`).

Memory: scores are ``4 bytes x queries x signatures scored``; nothing else grows with the
store beyond the pages of the genes read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.special import erfc

from l1000_assets.core.connectivity.kernels import (
    MAXQ_QUANTILES,
    es_kernel,
    rank_sum_kernel,
    segment_maxq,
    tau_kernel,
)
from l1000_assets.core.connectivity.store import (
    Segments,
    SignatureStore,
    abs_weight_table,
    segments_of,
)
from l1000_assets.core.evaluation.connectivity import (
    NcsReference,
    divide_by_group_means,
    wtcs_from_es,
)

METHODS = ("wtcs", "ncs", "tau", "mwu", "embedding")
"""Scoring methods of a gene-set query (the column each ranks by: wtcs, ncs, tau, z_sum,
similarity)."""
DIRECTIONS = ("mimickers", "reversers")
LEVELS = ("perturbagen", "cell", "signature")
"""Result levels: one row per perturbagen (summarized over cell lines), per perturbagen and
cell line, or per signature."""
TAU_LEVELS = np.linspace(0.0, 100.0, 101)
"""Percent levels of the reference quantiles kept per item."""

_WEIGHTS = abs_weight_table()


def ragged(sets: Sequence[NDArray[np.integer]]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Concatenated gene rows and offsets of a list of sets."""
    sizes = [len(s) for s in sets]
    flat = np.concatenate([np.asarray(s, np.int64) for s in sets]) if sets else np.empty(0)
    return flat.astype(np.int64), np.r_[0, np.cumsum(sizes)].astype(np.int64)


def enrichment(
    store: SignatureStore, sets: Sequence[NDArray[np.integer]], cols: NDArray[np.integer]
) -> NDArray[np.float32]:
    """``(len(sets), len(cols))`` float32 ES of each set in each signature (NaN for an
    empty set)."""
    flat, offsets = ragged(sets)
    out = np.empty((len(sets), len(cols)), np.float32)
    if len(sets) and len(cols):
        es_kernel(
            store.ranks, store.zbits, _WEIGHTS, np.asarray(cols, np.int64), flat, offsets, out
        )
    return out


def wtcs_pairs(es_up: NDArray[np.floating], es_down: NDArray[np.floating]) -> NDArray[np.float32]:
    """WTCS from the up and down ES (module docstring); rows whose up (down) ES is NaN have
    no up (down) set."""
    out = wtcs_from_es(np.nan_to_num(es_up), np.nan_to_num(es_down)).astype(np.float32)
    no_up = np.isnan(es_up).all(axis=-1)
    no_down = np.isnan(es_down).all(axis=-1)
    out[no_down] = es_up[no_down]
    out[no_up] = -es_down[no_up]
    return out


def query_wtcs(
    store: SignatureStore,
    up: Sequence[NDArray[np.integer]],
    down: Sequence[NDArray[np.integer]],
    cols: NDArray[np.integer],
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """WTCS, ES up and ES down ``(q, len(cols))`` of queries with sets ``up[i]``, ``down[i]``
    (an empty array: no such set)."""
    es = enrichment(store, [*up, *down], cols)
    es_up, es_down = es[: len(up)], es[len(up) :]
    return wtcs_pairs(es_up, es_down), es_up, es_down


def normalized(
    wtcs: NDArray[np.floating], groups: NDArray[np.integer], n_groups: int | None = None
) -> NDArray[np.float32]:
    """NCS of each row: WTCS over its own mean positive / mean |negative| WTCS within the
    group of each column (NaN where the group has no score of that sign)."""
    n_groups = int(groups.max(initial=-1)) + 1 if n_groups is None else n_groups
    reference = NcsReference(len(wtcs), n_groups)
    reference.add(slice(None), wtcs, groups)
    out = divide_by_group_means(wtcs, reference.means(), groups)
    return out.astype(np.float32)


def rank_sums(
    store: SignatureStore, sets: Sequence[NDArray[np.integer]], cols: NDArray[np.integer]
) -> NDArray[np.float64]:
    """``(len(sets), len(cols))``: the sum of each set's positions (0 = highest z) in each
    signature."""
    flat, offsets = ragged(sets)
    sums = np.empty((len(sets), len(cols)), np.float64)
    if len(sets) and len(cols):
        rank_sum_kernel(store.ranks, np.asarray(cols, np.int64), flat, offsets, sums)
    return sums


def rank_test(
    store: SignatureStore,
    sets: Sequence[NDArray[np.integer]],
    cols: NDArray[np.integer],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mann-Whitney z-scores and two-sided p-values ``(len(sets), len(cols))`` of each set's
    genes against the others in each signature (NaN for an empty set): :func:`mwu_from_sums`
    of :func:`rank_sums`."""
    sizes = np.array([len(s) for s in sets], np.int64)
    return mwu_from_sums(rank_sums(store, sets, cols), sizes, store.n_genes)


def mwu_from_sums(
    sums: NDArray[np.floating], sizes: NDArray[np.integer], n_genes: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mann-Whitney z and two-sided p from the sets' position sums ``(m, t)`` (sets of
    ``sizes`` ``(m,)`` genes among ``n_genes``).

    Ranks are a permutation (no ties), so with the ascending ranks ``a`` (1 = lowest z) of
    the ``G`` set genes among ``N``, ``U = sum(a) - G(G + 1)/2``, ``E[U] = G(N - G)/2`` and
    ``Var U = G(N - G)(N + 1)/12`` exactly; ``z = (U - E[U]) / sd`` is positive when the
    set's genes rank high. ``U - E[U] = (G(N - 1) - 2S) / 2`` for the position sum ``S``:
    the p-value depends on ``d = |2S - G(N - 1)|`` alone (:func:`rank_test_fdr`).
    """
    n = float(n_genes)
    g = np.asarray(sizes, np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (g * (n - 1) - 2 * np.asarray(sums, np.float64)) / 2 / _mwu_sd(g, n)
    z[(g == 0).ravel()] = np.nan
    p = erfc(np.abs(z) / np.sqrt(2.0))
    return z, p


def _mwu_sd(g, n):
    return np.sqrt(g * (n - g) * (n + 1) / 12)


def rank_test_distance(sums: NDArray[np.floating], size: int, n_genes: int) -> NDArray[np.int64]:
    """``d = |2S - G(N - 1)|`` of position sums ``S`` of a set of ``size`` genes: an integer
    of fixed parity in ``[0, G(N - G)]`` that orders the rank test's p-values (larger: smaller
    p)."""
    return np.abs(2 * np.asarray(sums, np.int64) - size * (n_genes - 1)).astype(np.int64)


def rank_test_fdr(
    counts: NDArray[np.integer], size: int, n_genes: int, bins: NDArray[np.integer]
) -> NDArray[np.float64]:
    """Benjamini-Hochberg FDRs of the rank test at distance bins ``bins``, from the
    histogram of the distances of every signature scored (``counts[b]``: signatures with
    ``d // 2 == b``, :func:`rank_test_distance`; ``bins`` must be among them).

    Exactly :func:`scipy.stats.false_discovery_control` of the p-values of those signatures
    (a tie takes the largest rank, as there), in memory that grows with the gene space
    (``G(N - G) / 2`` bins) and the distinct distances seen, not with the number of
    signatures: the adjusted p-value of bin ``b`` is ``min over b' <= b (larger p) of
    n p(b') / F(b')``, ``F(b')`` the signatures with p at most ``p(b')``, capped at 1.

    Raises
    ------
    ValueError
        If a bin asked for holds no signature.
    """
    seen = np.flatnonzero(counts)
    bins = np.asarray(bins, np.int64)
    at = np.searchsorted(seen, bins)
    if len(bins) and (at.max() >= len(seen) or np.any(seen[at] != bins)):
        raise ValueError("rank_test_fdr: a bin asked for holds no signature")
    c = np.asarray(counts)[seen].astype(np.int64)
    parity = (size * (n_genes - 1)) % 2
    p = erfc((2.0 * seen + parity) / 2 / _mwu_sd(float(size), float(n_genes)) / np.sqrt(2.0))
    at_most = np.cumsum(c[::-1])[::-1]  # signatures with d >= this bin's: p <= p(b)
    q = np.minimum(np.minimum.accumulate(c.sum() * p / at_most), 1.0)
    return q[at]


def tau_scores(
    ncs: NDArray[np.floating],
    quantiles: NDArray[np.floating],
    items: NDArray[np.integer] | None = None,
) -> NDArray[np.float32]:
    """tau ``(m, n)`` of NCS ``(m, n)`` against the references ``quantiles[items]``
    (``(n_items, len(TAU_LEVELS))`` ``|NCS|`` quantiles, e.g. the reference's memory-mapped
    ones; ``items`` the row of each column, default ``0 .. n - 1``; nothing is copied)."""
    ncs = np.atleast_2d(np.asarray(ncs))
    items = np.arange(ncs.shape[1]) if items is None else np.asarray(items)
    out = np.empty(ncs.shape, np.float32)
    if ncs.size:
        tau_kernel(np.ascontiguousarray(ncs), quantiles, items.astype(np.int64), TAU_LEVELS, out)
    return out


def maxq(values: NDArray[np.floating], segments: Segments) -> NDArray[np.float64]:
    """CMap's maximum-quantile summary ``(m, len(segments))`` of ``values`` ``(m, n)`` over
    the segments' items."""
    values = np.atleast_2d(np.asarray(values, np.float64))
    out = np.empty((len(values), len(segments)), np.float64)
    if len(segments):
        segment_maxq(values, segments.order, segments.offsets, *MAXQ_QUANTILES, out)
    return out


@dataclass(frozen=True)
class Levels:
    """How the signatures ``cols`` group into (perturbagen, cell line) pairs and those
    into perturbagens: the codes of each level and the segments to summarize over."""

    cols: NDArray[np.int64]
    pert_cells: NDArray[np.int64]  # store codes of the (perturbagen, cell line) pairs
    cell_segments: Segments  # over positions in cols
    perts: NDArray[np.int64]  # store codes of the perturbagens
    pert_segments: Segments  # over positions in pert_cells

    @classmethod
    def of(cls, store: SignatureStore, cols: NDArray[np.integer]) -> Levels:
        cols = np.asarray(cols, np.int64)
        pert_cells, cell_segments = segments_of(store.pert_cell_codes[cols])
        perts, pert_segments = segments_of(store.pert_of_pert_cell[pert_cells])
        return cls(cols, pert_cells, cell_segments, perts, pert_segments)


def landmark_profile(
    store: SignatureStore,
    up_rows: NDArray[np.integer],
    down_rows: NDArray[np.integer],
    gene_order: Sequence[str],
) -> NDArray[np.float32]:
    """A gene-set query as the embedding model's input, in ``gene_order``: +1 on its up
    landmark genes, -1 on its down ones, 0 elsewhere, scaled to the typical strength of the
    store's signatures (the median L2 norm of their landmark z-scores,
    :attr:`~l1000_assets.core.connectivity.store.SignatureStore.landmark_norm`), so the
    model sees a profile of the size it was trained on; all zero when the query has no
    landmark gene."""
    position = {g: i for i, g in enumerate(gene_order)}
    gene_ids = store.genes["gene_id"].astype(str).to_numpy()
    profile = np.zeros(len(gene_order), np.float32)
    for rows, sign in ((up_rows, 1.0), (down_rows, -1.0)):
        for gid in gene_ids[np.asarray(rows, np.int64)]:
            if gid in position:
                profile[position[gid]] = sign
    n = np.count_nonzero(profile)
    if n:
        profile *= np.float32(store.landmark_norm / np.sqrt(n))
    return profile
