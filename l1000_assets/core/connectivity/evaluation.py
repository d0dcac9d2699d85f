"""The gene-set protocol: how well each method's gene-set query finds a held-out
perturbagen, measured as the paper's other protocols are (a protocol of
``evaluation_ranks[split_<seed>]``, pooled over splits by ``evaluation_metrics``).

Queries are one split's held-out perturbagens' signatures (never seen by that split's
model), each reduced to what a CMap user would submit: its top and bottom ``k`` genes
(default 100) in the store's gene space. At most ``max_queries`` signatures (seeded) are
queries, **the same queries for every method**; candidates are every held-out signature but
the query itself (for every method the same); positives are the signatures of the same
perturbagen (other cell lines, doses, times), negatives those of other perturbagens. Each
method scores the query against the candidates at the signature level:

``wtcs``
    CMap's weighted connectivity score.
``ncs``
    WTCS normalized within the candidate's cell line and perturbagen type over the whole
    store, as a CMap query is.
``tau``
    NCS against the lake's tau reference (``connectivity_reference``: a seeded sample of
    the store's signatures as queries, held-out ones among them; it is a null
    distribution, never trained on).
``mwu``
    SigCom's rank test, ``z_up - z_down``.
``embedding``
    The query projected into the model's input space and embedded by **the split's model**,
    cosine with the candidates' embeddings by the same model (the re-normalized mean of
    each signature's profile embeddings, as ``signature_embeddings`` is for the served
    model: :func:`heldout_signature_vectors`).

Each positive's rank quantile (the paper's rule) and its score beside that of a seeded
negative of its query (for the balanced MCC) come back as
:class:`~l1000_assets.core.evaluation.protocols.ProtocolRun`, ready for
:func:`~l1000_assets.core.evaluation.report.ranks_table`, so the metrics (median q, recall
at top-0.001/0.01/0.1 with q = x counting one half, AUC, balanced MCC) are those of every
other protocol, pooled over the splits the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from l1000_assets.core.connectivity.reference import Reference, signature_sets
from l1000_assets.core.connectivity.scoring import (
    landmark_profile,
    normalized,
    query_wtcs,
    rank_test,
    tau_scores,
)
from l1000_assets.core.connectivity.store import SignatureStore
from l1000_assets.core.embeddings.aggregates import SIGNATURE_KEYS, signature_ids
from l1000_assets.core.embeddings.vectors import normalize_rows
from l1000_assets.core.evaluation.metrics import rank_quantiles
from l1000_assets.core.evaluation.protocols import ProtocolRun, pert_group
from l1000_assets.core.evaluation.report import GENESET_PROTOCOL
from l1000_assets.core.evaluation.retrieval import RetrievalResult
from l1000_assets.core.lake.read import landmark_matrix
from l1000_assets.core.lake.schema import VALUES_COLUMN
from l1000_assets.core.model.normalization import perturbagen_batches
from l1000_assets.core.progress import Log

PROTOCOL = GENESET_PROTOCOL
GENESET_METHODS = ("wtcs", "ncs", "tau", "mwu", "embedding")
"""Methods of the gene-set protocol (scored from the signature store, not the profile
methods of :data:`~l1000_assets.core.evaluation.protocols.METHOD_SPECS`)."""
DEFAULT_GENESET_K = 100
DEFAULT_GENESET_QUERIES = 500
_QUERY_BLOCK = 32

EmbedProfiles = Callable[[NDArray[np.float32]], NDArray[np.float32]]


def heldout_signature_vectors(
    files: Sequence[Path],
    pert_ids: set[str],
    embed: EmbedProfiles,
    sig_ids: Sequence[str],
    *,
    batch_size: int = 32_768,
) -> NDArray[np.float32]:
    """Embeddings ``(len(sig_ids), d)`` of signatures by ``embed`` (a split's model): the
    re-normalized mean of the embeddings of each signature's lake profiles, as
    ``signature_embeddings`` is for the served model; only the profiles of ``pert_ids``
    are read (streamed by batch: memory is one batch plus the sums); NaN rows for
    signatures without a profile there."""
    position = pd.Series(np.arange(len(sig_ids)), index=pd.Index(sig_ids, dtype=object))
    sums: NDArray[np.float64] | None = None
    counts = np.zeros(len(sig_ids), np.int64)
    columns = list(dict.fromkeys([*SIGNATURE_KEYS, VALUES_COLUMN]))
    for batch in perturbagen_batches(files, pert_ids, columns, batch_size):
        rows = position.reindex(signature_ids(batch)).to_numpy()
        known = ~np.isnan(rows)
        if not known.any():
            continue
        v = np.asarray(embed(landmark_matrix(batch)), np.float64)[known]
        if sums is None:
            sums = np.zeros((len(sig_ids), v.shape[1]), np.float64)
        idx = rows[known].astype(np.int64)
        np.add.at(sums, idx, v)
        counts += np.bincount(idx, minlength=len(sig_ids))
    if sums is None:
        return np.full((len(sig_ids), 1), np.nan, np.float32)
    out = np.full(sums.shape, np.nan, np.float32)
    seen = counts > 0
    out[seen] = normalize_rows(sums[seen] / counts[seen, None])
    return out


def geneset_protocol(
    store: SignatureStore,
    heldout_pert_ids: set[str] | Sequence[str],
    *,
    reference: Reference | None = None,
    methods: Sequence[str] = GENESET_METHODS,
    k: int = DEFAULT_GENESET_K,
    max_queries: int = DEFAULT_GENESET_QUERIES,
    seed: int = 0,
    embed: EmbedProfiles | None = None,
    gene_order: Sequence[str] | None = None,
    signature_vectors: NDArray[np.float32] | None = None,
    log: Log = lambda m: None,
) -> list[ProtocolRun]:
    """The gene-set protocol (module docstring) for ``methods``, one run per method.

    Parameters
    ----------
    store
        The signature store.
    heldout_pert_ids
        The held-out perturbagens (the test fold of the split).
    reference
        The tau reference (tau is skipped without it).
    methods
        Among :data:`GENESET_METHODS`.
    k
        Genes in each of a query's sets.
    max_queries
        Queries drawn (seeded) when more held-out signatures have a positive; every method
        scores the same ones.
    seed
        Seed of the query draw and of the MCC's paired negatives.
    embed, gene_order, signature_vectors
        For the embedding method: the split's model (``(n, 978)`` landmark z-scores to unit
        vectors), its input gene order, and the signatures' embeddings by that model
        aligned with the store's columns (:func:`heldout_signature_vectors`; NaN rows for
        signatures without one, which are then no candidates for any method). Skipped
        without them.
    log
        Progress messages.
    """
    unknown = sorted(set(methods) - set(GENESET_METHODS))
    if unknown:
        raise ValueError(
            f"unknown gene-set method(s) {', '.join(unknown)}; one of {', '.join(GENESET_METHODS)}"
        )
    methods = [
        m
        for m in methods
        if (m != "tau" or reference is not None)
        and (m != "embedding" or (embed is not None and signature_vectors is not None))
    ]
    index = store.index
    pert = index["pert_id"].astype(str).to_numpy()
    held = np.isin(pert, sorted(set(heldout_pert_ids)))
    if "embedding" in methods:
        missing = held & np.isnan(signature_vectors[:, 0])
        if missing.any():
            log(
                f"gene-set protocol: {int(missing.sum()):,} held-out signatures without an "
                "embedding left out of the candidates"
            )
        held &= ~missing
    cand = np.flatnonzero(held)
    counts = pd.Series(pert[cand]).value_counts()
    eligible = cand[counts.reindex(pert[cand]).to_numpy() > 1]
    rng = np.random.default_rng(seed)
    queries = (
        np.sort(rng.choice(eligible, max_queries, replace=False))
        if len(eligible) > max_queries
        else eligible
    )
    if not len(queries) or not methods:
        return []
    log(
        f"gene-set protocol: {len(queries):,} queries (top/bottom {k} genes; the same for "
        f"every method) x {len(cand):,} held-out signatures; methods {', '.join(methods)}"
    )
    all_cols = np.arange(len(store), dtype=np.int64)
    groups = store.group_codes
    n_groups = int(groups.max()) + 1
    parts: dict[str, list[tuple]] = {m: [] for m in methods}
    for b0 in range(0, len(queries), _QUERY_BLOCK):
        block = queries[b0 : b0 + _QUERY_BLOCK]
        up, down = signature_sets(store, block, k)
        scores: dict[str, NDArray[np.floating]] = {}
        if {"wtcs", "ncs", "tau"} & set(methods):
            wtcs, _, _ = query_wtcs(store, up, down, all_cols)
            ncs = normalized(wtcs, groups, n_groups)
            scores["wtcs"], scores["ncs"] = wtcs[:, cand], ncs[:, cand]
            if "tau" in methods:
                scores["tau"] = tau_scores(ncs[:, cand], reference.quantiles["signature"], cand)
        if "mwu" in methods:
            z_up, _ = rank_test(store, up, cand)
            z_down, _ = rank_test(store, down, cand)
            scores["mwu"] = z_up - z_down
        if "embedding" in methods:
            profiles = np.stack(
                [landmark_profile(store, u, d, gene_order) for u, d in zip(up, down)]
            )
            z = np.asarray(embed(profiles), np.float32)
            scores["embedding"] = z @ signature_vectors[cand].T
        same = pert[block][:, None] == pert[cand][None, :]
        not_self = block[:, None] != cand[None, :]
        for method in methods:
            s = np.asarray(scores[method], np.float64)
            valid = ~np.isnan(s)
            negative = ~same & valid
            positive = same & not_self & valid & negative.any(axis=1)[:, None]
            q = rank_quantiles(np.where(valid, s, -np.inf), positive, negative)
            pos_scores, neg_scores = [], []
            for i, query in enumerate(block):
                p = s[i, positive[i]]
                n = s[i, negative[i]]
                pos_scores.append(p)
                if len(p) and len(n):
                    pick = np.random.default_rng([seed, int(query), 1]).integers(0, len(n), len(p))
                    neg_scores.append(n[pick])
                else:
                    neg_scores.append(np.full(len(p), np.nan))
            owner = b0 + np.repeat(np.arange(len(block)), positive.sum(axis=1))
            parts[method].append((q, owner, np.concatenate(pos_scores), np.concatenate(neg_scores)))
        log(f"gene-set protocol: {min(b0 + _QUERY_BLOCK, len(queries)):,}/{len(queries):,} queries")
    kinds = pert_group(index["pert_type"].iloc[queries])
    cells = index["cell_id"].astype(str).to_numpy()[queries]
    runs = []
    for method in methods:
        q, owner, pos, neg = (np.concatenate(v) for v in zip(*parts[method]))
        result = RetrievalResult(
            q.astype(np.float64),
            owner.astype(np.int64),
            len(queries),
            pos.astype(np.float32),
            neg.astype(np.float32),
        )
        runs.append(ProtocolRun(PROTOCOL, method, result, kinds, cells, pert[queries]))
    return runs
