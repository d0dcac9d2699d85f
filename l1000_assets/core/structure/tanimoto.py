"""Tanimoto similarity of packed fingerprints, by blocks: no N x N matrix is ever held.

``T(a, b) = |a & b| / (|a| + |b| - |a & b|)`` (0 when both are empty). Intersections of a
block of queries with a block of candidates are one matrix product of their unpacked bits
(exact: counts of at most 2,048 are exact in float32), so the cost is that of a
``block x 2048 x candidate_block`` BLAS call and the memory ``O(block x candidate_block)``
plus the unpacked blocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from l1000_assets.core.structure.fingerprints import bit_counts

QUERY_BLOCK = 1024
CANDIDATE_BLOCK = 8192


def _unpack(packed: NDArray[np.uint8]) -> NDArray[np.float32]:
    return np.unpackbits(packed, axis=1).astype(np.float32)


def _similarity(
    inter: NDArray[np.float32], q_on: NDArray[np.int32], c_on: NDArray[np.int32]
) -> NDArray[np.float32]:
    union = q_on[:, None].astype(np.float32) + c_on[None, :].astype(np.float32) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out.astype(np.float32, copy=False)


def tanimoto(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> NDArray[np.float32]:
    """``(len(a), len(b))`` Tanimoto similarities of two small sets of packed fingerprints.

    For large sets use :func:`iter_tanimoto_blocks` or :func:`top_similar`.
    """
    inter = _unpack(a) @ _unpack(b).T
    return _similarity(inter, bit_counts(a), bit_counts(b))


def iter_tanimoto_blocks(
    queries: NDArray[np.uint8],
    candidates: NDArray[np.uint8],
    *,
    query_block: int = QUERY_BLOCK,
    candidate_block: int = CANDIDATE_BLOCK,
) -> Iterator[tuple[slice, slice, NDArray[np.float32]]]:
    """Yield ``(query rows, candidate columns, similarities)`` tile by tile."""
    q_on, c_on = bit_counts(queries), bit_counts(candidates)
    for c0 in range(0, len(candidates), candidate_block):
        cs = slice(c0, min(c0 + candidate_block, len(candidates)))
        cand = _unpack(candidates[cs]).T.copy()
        for q0 in range(0, len(queries), query_block):
            qs = slice(q0, min(q0 + query_block, len(queries)))
            inter = _unpack(queries[qs]) @ cand
            yield qs, cs, _similarity(inter, q_on[qs], c_on[cs])


def pair_tanimoto(
    packed: NDArray[np.uint8], i: NDArray[np.intp], j: NDArray[np.intp], *, block: int = 65_536
) -> NDArray[np.float32]:
    """Tanimoto of the pairs ``(i[k], j[k])`` of one fingerprint set (any number of pairs)."""
    i, j = np.asarray(i, np.intp), np.asarray(j, np.intp)
    out = np.empty(len(i), np.float32)
    on = bit_counts(packed)
    for s in range(0, len(i), block):
        a, b = i[s : s + block], j[s : s + block]
        inter = np.bitwise_count(packed[a] & packed[b]).sum(axis=1, dtype=np.int32)
        union = on[a] + on[b] - inter
        out[s : s + block] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out


@dataclass(frozen=True)
class Neighbours:
    """The ``k`` most similar candidates of every query: ``index`` and ``similarity`` are
    ``(n_queries, k)``, most similar first (ties: lower index first); -1 and NaN pad rows
    with fewer than ``k`` candidates."""

    index: NDArray[np.int64]
    similarity: NDArray[np.float32]


_INDEX_BITS = 32
_MAX_INDEX = (1 << _INDEX_BITS) - 1


def _keys(sim: NDArray[np.float32], cols: NDArray[np.int64]) -> NDArray[np.int64]:
    """One int64 per score ordering by similarity, then by lower index: unique keys, so
    the top ``k`` do not depend on how candidates were split into blocks. Similarities are
    in [0, 1], where the float32 bit pattern is monotone."""
    high = sim.astype(np.float32).view(np.int32).astype(np.int64) << _INDEX_BITS
    return high | (_MAX_INDEX - cols)


def top_similar(
    queries: NDArray[np.uint8],
    candidates: NDArray[np.uint8],
    k: int,
    *,
    exclude_self: bool = False,
    query_block: int = QUERY_BLOCK,
    candidate_block: int = CANDIDATE_BLOCK,
) -> Neighbours:
    """The ``k`` nearest candidates of each query by Tanimoto, by blocks.

    ``exclude_self``: queries and candidates are the same set; a query is not its own
    neighbour. Memory is one tile of scores plus ``(n_queries, k)``.
    """
    if len(candidates) > _MAX_INDEX:
        raise ValueError(f"at most {_MAX_INDEX:,} candidates")
    n_q = len(queries)
    best = np.full((n_q, k), -1, np.int64)  # -1: below every real key
    for qs, cs, sim in iter_tanimoto_blocks(
        queries, candidates, query_block=query_block, candidate_block=candidate_block
    ):
        keys = _keys(sim, np.arange(cs.start, cs.stop, dtype=np.int64)[None, :])
        if exclude_self:
            rows = np.arange(qs.start, qs.stop)
            inside = (rows >= cs.start) & (rows < cs.stop)
            keys[np.nonzero(inside)[0], rows[inside] - cs.start] = -1
        both = np.concatenate([best[qs], keys], axis=1)
        top = np.argpartition(-both, k - 1, axis=1)[:, :k]
        best[qs] = np.take_along_axis(both, top, axis=1)
    best = -np.sort(-best, axis=1)
    missing = best < 0
    index = np.where(missing, -1, _MAX_INDEX - (best & _MAX_INDEX))
    similarity = (best >> _INDEX_BITS).astype(np.int32).view(np.float32)
    return Neighbours(index.astype(np.int64), np.where(missing, np.nan, similarity))
