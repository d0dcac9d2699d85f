"""Drug-level retrieval with structure: Tanimoto and the paper's combo as methods, positives
that share any annotation, and a breakdown by the structural similarity of each pair.

Donner et al.'s Table 2 compares, at drug level, the embedding, z-scores, ECFP4 and MACCS
Tanimoto and a "combo" (the unweighted mean of embedding similarity and ECFP4 Tanimoto).
Here a drug-level query is one compound; its positives are the other compounds that share
at least one annotation (MOA or target; annotations are ``|``-separated lists), its
negatives those that share none; compounds without the annotation are neither queries nor
candidates. Rank quantiles (ties half) come from
:func:`~l1000_assets.core.evaluation.metrics.rank_quantiles`, one block of queries at a
time: memory is ``O(block x n)``, never ``n x n``.

:func:`breakdown_by_structure` splits the positives by the Tanimoto of the (query,
positive) pair: does a method find pharmacologically similar compounds that are
structurally dissimilar?
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import sparse

from l1000_assets.core.embeddings.vectors import normalize_rows
from l1000_assets.core.evaluation.metrics import (
    RetrievalSummary,
    rank_quantiles,
    summarize_quantiles,
)
from l1000_assets.core.structure.tanimoto import pair_tanimoto, tanimoto

STRUCTURE_METHODS = ("tanimoto", "combo")
"""Drug-level methods this module adds: ECFP4 Tanimoto, and the mean of embedding cosine
and ECFP4 Tanimoto."""

STRUCTURE_BINS = (0.0, 0.2, 0.4, 1.0)
"""Edges of the pair-Tanimoto bins of :func:`breakdown_by_structure` (ECFP4: pairs below
0.2 are structurally unrelated, above 0.4 close analogues)."""

MISSING_ANNOTATIONS = frozenset({"", "-666", "NA", "nan", "None"})

Scores = Callable[[slice], NDArray[np.float32]]
"""Similarities of the queries in a slice against every candidate: ``(len, n)``."""


def annotation_sets(values: Sequence) -> list[frozenset[str]]:
    """One set per value: the items of a ``|``-separated annotation, missing values empty."""
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
            out.append(frozenset())
            continue
        items = {s.strip() for s in str(v).split("|")}
        out.append(frozenset(items - MISSING_ANNOTATIONS))
    return out


def incidence(sets: Sequence[frozenset[str]]) -> sparse.csr_matrix:
    """``(n, n_labels)`` 0/1 matrix of the sets (labels in sorted order)."""
    labels = sorted(set().union(*sets)) if sets else []
    column = {label: j for j, label in enumerate(labels)}
    rows = [i for i, s in enumerate(sets) for _ in s]
    cols = [column[label] for s in sets for label in s]
    return sparse.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(sets), len(labels))
    )


@dataclass(frozen=True)
class DrugLevelResult:
    """Rank quantile of every positive pair, with the pair: ``query`` and ``positive`` are
    row indices into the compounds that were scored."""

    quantiles: NDArray[np.float64]
    query: NDArray[np.int64]
    positive: NDArray[np.int64]
    n_queries: int

    def summary(self, mask: NDArray[np.bool_] | None = None) -> RetrievalSummary:
        """Pooled metrics, optionally over the positive pairs in ``mask``."""
        if mask is None:
            return RetrievalSummary.from_quantiles(self.quantiles, self.n_queries)
        n_q = len(np.unique(self.query[mask]))
        return RetrievalSummary.from_quantiles(self.quantiles[mask], n_q)


def drug_level_quantiles(
    scores: Scores, sets: Sequence[frozenset[str]], *, block_size: int = 256
) -> DrugLevelResult:
    """Rank quantiles of compounds sharing an annotation, by blocks of queries.

    ``scores(rows)`` gives the similarities of the compounds ``rows`` against all ``n``
    (the query itself is excluded). A compound with an empty set is neither a query nor a
    candidate; a query without a positive or a negative contributes nothing.
    """
    n = len(sets)
    has = np.array([bool(s) for s in sets])
    inc = incidence(sets)
    out_q, out_i, out_p = [], [], []
    n_queries = 0
    for b0 in range(0, n, block_size):
        rows = slice(b0, min(b0 + block_size, n))
        shared = (inc[rows] @ inc.T).toarray() > 0
        valid = has[rows, None] & has[None, :]
        valid[np.arange(rows.stop - b0), np.arange(b0, rows.stop)] = False
        positive = shared & valid
        negative = ~shared & valid
        keep = positive.any(axis=1) & negative.any(axis=1)
        if not keep.any():
            continue
        s = scores(rows)
        positive &= keep[:, None]
        out_q.append(rank_quantiles(s, positive, negative))
        r, c = np.nonzero(positive)  # row-major, as rank_quantiles orders its output
        out_i.append(r + b0)
        out_p.append(c)
        n_queries += int(keep.sum())
    if not out_q:
        empty = np.empty(0, np.int64)
        return DrugLevelResult(np.empty(0), empty, empty, 0)
    return DrugLevelResult(
        np.concatenate(out_q),
        np.concatenate(out_i).astype(np.int64),
        np.concatenate(out_p).astype(np.int64),
        n_queries,
    )


def cosine_scores(vectors: NDArray[np.floating]) -> Scores:
    """Cosine similarity of rows (z-score profiles or embeddings)."""
    x = normalize_rows(np.asarray(vectors, dtype=np.float32))
    return lambda rows: x[rows] @ x.T


def tanimoto_scores(packed: NDArray[np.uint8]) -> Scores:
    """ECFP4 Tanimoto of bit-packed fingerprints."""
    return lambda rows: tanimoto(packed[rows], packed)


def combo_scores(vectors: NDArray[np.floating], packed: NDArray[np.uint8]) -> Scores:
    """The paper's combo: the unweighted mean of embedding cosine and ECFP4 Tanimoto."""
    cosine, tani = cosine_scores(vectors), tanimoto_scores(packed)
    return lambda rows: 0.5 * (cosine(rows) + tani(rows))


def method_scores(
    method: str,
    vectors: NDArray[np.floating] | None,
    packed: NDArray[np.uint8] | None,
) -> Scores:
    """The scores of a drug-level method: ``tanimoto``, ``combo`` or a cosine method."""
    if method == "tanimoto":
        if packed is None:
            raise ValueError("tanimoto needs fingerprints")
        return tanimoto_scores(packed)
    if method == "combo":
        if vectors is None or packed is None:
            raise ValueError("combo needs embeddings and fingerprints")
        return combo_scores(vectors, packed)
    if vectors is None:
        raise ValueError(f"{method} needs vectors")
    return cosine_scores(vectors)


def breakdown_by_structure(
    result: DrugLevelResult,
    packed: NDArray[np.uint8],
    *,
    bins: Sequence[float] = STRUCTURE_BINS,
) -> pd.DataFrame:
    """The positives' summary per bin of the pair's ECFP4 Tanimoto.

    One row per bin (``[lo, hi)``, the last closed): ``tanimoto_bin``, ``n_positives``,
    ``n_queries`` and :data:`~l1000_assets.core.evaluation.metrics.SUMMARY_METRICS`.
    """
    pair = pair_tanimoto(packed, result.query, result.positive)
    rows = []
    edges = list(bins)
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = k == len(edges) - 2
        mask = (pair >= lo) & ((pair <= hi) if last else (pair < hi))
        rows.append(
            {
                "tanimoto_bin": f"[{lo:g}, {hi:g}{']' if last else ')'}",
                "n_positives": int(mask.sum()),
                "n_queries": int(len(np.unique(result.query[mask]))),
                **summarize_quantiles(result.quantiles[mask]),
            }
        )
    return pd.DataFrame(rows)
