"""The gene-set protocol: how well each method's gene-set query finds a held-out
perturbagen, measured as the paper's other protocols are.

Queries are held-out perturbagens' signatures (never seen by the model), each reduced to
what a CMap user would submit: its top and bottom ``k`` genes (default 100) in the store's
gene space. Candidates are every held-out signature but the query itself; positives are
the signatures of the same perturbagen (other cell lines, doses, times), negatives those of
other perturbagens. Each method scores the query against the candidates at the signature
level (WTCS; NCS, normalized within cell line and type over the whole store, as a CMap
query is; tau against the lake's reference; SigCom's rank test ``z_sum``; the embedding's
cosine of the projected query and the signature embeddings) and the rank quantile of every
positive among the negatives is pooled into the summary metrics of
:mod:`~l1000_assets.core.evaluation.metrics` (median q, recall at top-0.001/0.01/0.1, AUC)
and a balanced MCC (each positive paired with a seeded random negative of its query,
thresholded at the pooled median), for all queries, small molecules and genetic ones.

Results come as :class:`~l1000_assets.core.evaluation.retrieval.RetrievalResult` per method,
ready for the evaluation's tidy table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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
from l1000_assets.core.evaluation.metrics import rank_quantiles, summarize_quantiles
from l1000_assets.core.evaluation.retrieval import RetrievalResult
from l1000_assets.core.progress import Log
from l1000_assets.core.releases.schema import GENETIC_PERT_TYPES

PROTOCOL = "gene_set"
GENESET_METHODS = ("wtcs", "ncs", "tau", "mwu", "embedding")
DEFAULT_GENESET_K = 100
_QUERY_BLOCK = 32

EmbedProfiles = Callable[[NDArray[np.float32]], NDArray[np.float32]]


@dataclass(frozen=True)
class GeneSetRun:
    """One method's retrieval on the gene-set protocol."""

    method: str
    result: RetrievalResult
    query_groups: dict[str, NDArray[np.bool_]]  # group -> mask over the queries
    query_clusters: NDArray[np.object_]  # perturbagen of each query


def _groups(pert_types: NDArray[np.object_]) -> dict[str, NDArray[np.bool_]]:
    kinds = np.asarray(pert_types, dtype=str)
    groups = {"all": np.ones(len(kinds), bool)}
    cp = kinds == "trt_cp"
    genetic = np.isin(kinds, sorted(GENETIC_PERT_TYPES))
    if cp.any():
        groups["small_molecules"] = cp
    if genetic.any():
        groups["genetic"] = genetic
    return groups


def _balanced_confusion(
    scores: NDArray[np.floating],
    positive: NDArray[np.bool_],
    negative: NDArray[np.bool_],
    rng: np.random.Generator,
) -> tuple[list[float], list[float]]:
    """Each positive's score and one random negative's of the same query."""
    pos, neg = [], []
    for i in range(len(scores)):
        p = scores[i, positive[i]]
        candidates = scores[i, negative[i]]
        if len(p) and len(candidates):
            pos.extend(p.tolist())
            neg.extend(candidates[rng.integers(0, len(candidates), len(p))].tolist())
    return pos, neg


def geneset_protocol(
    store: SignatureStore,
    heldout_pert_ids: set[str] | Sequence[str],
    *,
    reference: Reference | None = None,
    methods: Sequence[str] = GENESET_METHODS,
    k: int = DEFAULT_GENESET_K,
    max_queries: int = 500,
    seed: int = 0,
    embed: EmbedProfiles | None = None,
    gene_order: Sequence[str] | None = None,
    signature_vectors: NDArray[np.float32] | None = None,
    log: Log = lambda m: None,
) -> list[GeneSetRun]:
    """The gene-set protocol (module docstring) for ``methods``.

    Parameters
    ----------
    store
        The signature store.
    heldout_pert_ids
        The held-out perturbagens (the test fold of the model's split).
    reference
        The tau reference (tau is skipped without it).
    methods
        Among :data:`GENESET_METHODS`.
    k
        Genes in each of a query's sets.
    max_queries
        Queries drawn (seeded) when more held-out signatures have a positive.
    seed
        Seed of the query draw and of the MCC's negatives.
    embed, gene_order, signature_vectors
        For the embedding method: the model (``(n, 978)`` landmark z-scores to unit
        vectors), its input gene order, and the signature embeddings aligned with the
        store's columns (NaN rows for signatures without one). Skipped without them.
    log
        Progress messages.
    """
    index = store.index
    pert = index["pert_id"].astype(str).to_numpy()
    cand = np.flatnonzero(np.isin(pert, sorted(set(heldout_pert_ids))))
    counts = pd.Series(pert[cand]).value_counts()
    eligible = cand[counts.reindex(pert[cand]).to_numpy() > 1]
    rng = np.random.default_rng(seed)
    queries = (
        np.sort(rng.choice(eligible, max_queries, replace=False))
        if len(eligible) > max_queries
        else eligible
    )
    methods = [
        m
        for m in methods
        if (m != "tau" or reference is not None)
        and (m != "embedding" or (embed is not None and signature_vectors is not None))
    ]
    if not len(queries) or not methods:
        return []
    log(
        f"gene-set protocol: {len(queries):,} queries (top/bottom {k} genes) x "
        f"{len(cand):,} held-out signatures; methods {', '.join(methods)}"
    )
    all_cols = np.arange(len(store), dtype=np.int64)
    groups = store.group_codes
    n_groups = int(groups.max()) + 1
    quantiles: dict[str, list] = {m: [] for m in methods}
    owners: dict[str, list] = {m: [] for m in methods}
    pairs: dict[str, tuple[list, list]] = {m: ([], []) for m in methods}
    mcc_rng = np.random.default_rng(seed + 1)
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
            positive = same & not_self & valid
            negative = ~same & valid
            q = rank_quantiles(np.where(valid, s, -np.inf), positive, negative)
            quantiles[method].append(q)
            owners[method].append(b0 + np.repeat(np.arange(len(block)), positive.sum(axis=1)))
            p, n = _balanced_confusion(s, positive, negative, mcc_rng)
            pairs[method][0].extend(p)
            pairs[method][1].extend(n)
        log(f"gene-set protocol: {min(b0 + _QUERY_BLOCK, len(queries)):,}/{len(queries):,} queries")
    query_groups = _groups(index["pert_type"].to_numpy(object)[queries])
    runs = []
    for method in methods:
        q = np.concatenate(quantiles[method])
        pos, neg = (np.asarray(v) for v in pairs[method])
        threshold = float(np.median(np.r_[pos, neg])) if len(pos) else float("nan")
        tp, fn = int((pos > threshold).sum()), int((pos <= threshold).sum())
        fp, tn = int((neg > threshold).sum()), int((neg <= threshold).sum())
        owner = np.concatenate(owners[method]).astype(np.int64)
        result = RetrievalResult(q, owner, len(queries), (tp, fp, tn, fn), threshold)
        runs.append(GeneSetRun(method, result, query_groups, pert[queries].astype(object)))
    return runs


def summary_table(runs: Sequence[GeneSetRun]) -> pd.DataFrame:
    """protocol, group, method, metric, value, n_queries, n_positives of each run."""
    rows = []
    for run in runs:
        r = run.result
        for group, mask in run.query_groups.items():
            sel = mask[r.query_index]
            metrics = {**summarize_quantiles(r.quantiles[sel])}
            if group == "all":
                metrics["mcc"] = r.mcc
            for metric, value in metrics.items():
                rows.append(
                    {
                        "protocol": PROTOCOL,
                        "group": group,
                        "method": run.method,
                        "metric": metric,
                        "value": value,
                        "n_queries": int(mask.sum()),
                        "n_positives": int(sel.sum()),
                    }
                )
    return pd.DataFrame(rows)
