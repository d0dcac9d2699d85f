"""The paper's evaluation protocols, every method on the same queries, as a tidy table.

Protocols (Donner et al. 2018; ``../shared/docs/science.md`` section 3):

``same_perturbagen``
    Every held-out profile is a query; positives are the other held-out profiles of the
    same perturbagen, negatives the held-out profiles of other perturbagens.
``replicates``
    Positives are biological replicates: same perturbagen, cell line, dose and time;
    negatives every held-out profile of another condition.
``moa`` / ``target`` (drug level)
    A perturbagen's vector is the mean of its profiles' vectors (re-normalized for the
    embedding; the mean z-score profile for the baselines); positives share the
    annotation, negatives do not. Perturbagens without the annotation are left out.

Methods: ``embedding`` (cosine of the deep embedding), ``zscore_cosine``,
``zscore_euclidean``, ``wtcs`` (CMap connectivity of the query's top and bottom 150
landmark genes; on at most ``max_wtcs_queries`` seeded queries against every candidate,
because it costs about a thousand times more than a dot product) and, on request,
``ncs`` (WTCS normalized within the candidates' cell line and perturbagen type, with the
held-out candidates as the reference set; twice the cost of WTCS). CMap's tau is not
offered: it needs a fixed reference set of queries (CMap's Touchstone) that a held-out
evaluation does not have.

Groups: queries of ``all`` types, ``small_molecules`` (``trt_cp``), ``genetic`` and, for
profile-level protocols, each cell line (``cell:<id>``). Candidates are always every
held-out profile, whatever the group.

Confidence intervals: over several splits (a t interval of the per-split values) when
more than one split is given, else a percentile bootstrap over the held-out perturbagens
(query clusters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from l1000_assets.core.embeddings.vectors import normalize_rows
from l1000_assets.core.evaluation.retrieval import RetrievalResult, retrieval
from l1000_assets.core.lake.read import landmark_matrix
from l1000_assets.core.lake.schema import VALUES_COLUMN
from l1000_assets.core.model.normalization import perturbagen_batches
from l1000_assets.core.progress import Log
from l1000_assets.core.releases.schema import GENETIC_PERT_TYPES

PROTOCOLS = ("same_perturbagen", "replicates", "moa", "target")
METHODS = ("embedding", "zscore_cosine", "zscore_euclidean", "wtcs", "ncs")
DEFAULT_METHODS = ("embedding", "zscore_cosine", "zscore_euclidean", "wtcs")
META_COLUMNS = [
    "inst_id",
    "pert_id",
    "pert_iname",
    "pert_type",
    "cell_id",
    "pert_dose",
    "pert_time",
]


@dataclass
class HeldOut:
    """Held-out profiles in memory: ``values`` (n, 978) float32 and their metadata."""

    values: NDArray[np.float32]
    meta: pd.DataFrame


def load_heldout(
    files: Sequence[Path],
    pert_ids: set[str],
    perturbagens: pd.DataFrame,
    *,
    max_profiles: int | None = None,
    seed: int = 0,
) -> HeldOut:
    """Profiles of ``pert_ids`` from the lake with MOA and target from ``perturbagens``
    (streamed by batch; a seeded subsample of ``max_profiles`` when there are more)."""
    values, metas = [], []
    for batch in perturbagen_batches(files, pert_ids, [*META_COLUMNS, VALUES_COLUMN]):
        values.append(landmark_matrix(batch).copy())
        metas.append(batch.select(META_COLUMNS).to_pandas())
    if not values:
        return HeldOut(np.zeros((0, 978), np.float32), pd.DataFrame(columns=META_COLUMNS))
    x = np.concatenate(values)
    meta = pd.concat(metas, ignore_index=True)
    if max_profiles is not None and len(x) > max_profiles:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_profiles, replace=False))
        x, meta = x[keep], meta.iloc[keep].reset_index(drop=True)
    annotations = perturbagens.drop_duplicates("pert_id").set_index("pert_id")[["moa", "target"]]
    meta = meta.join(annotations, on="pert_id")
    return HeldOut(x, meta)


def pert_group(pert_type: pd.Series) -> np.ndarray:
    """``small_molecules``, ``genetic`` or ``other`` for each perturbagen type."""
    t = pert_type.astype(str).to_numpy()
    return np.where(
        t == "trt_cp",
        "small_molecules",
        np.where(np.isin(t, sorted(GENETIC_PERT_TYPES)), "genetic", "other"),
    )


@dataclass
class ProtocolRun:
    """One protocol for one method on one split: the retrieval result and its queries."""

    protocol: str
    method: str
    result: RetrievalResult
    query_groups: dict[str, NDArray[np.bool_]]  # group -> boolean mask over queries
    query_clusters: NDArray[np.str_]  # perturbagen of each query (bootstrap unit)


@dataclass
class EvaluationConfig:
    protocols: Sequence[str] = PROTOCOLS
    methods: Sequence[str] = DEFAULT_METHODS
    mode: str = "exact"
    n_sampled: int = 10_000
    max_wtcs_queries: int = 1000
    wtcs_k: int = 150
    per_cell_line: bool = True
    seed: int = 0


def run_protocols(
    heldout: HeldOut,
    embeddings: NDArray[np.float32] | None,
    config: EvaluationConfig,
    log: Log = lambda m: None,
) -> list[ProtocolRun]:
    """Every protocol x method on one split's held-out profiles.

    ``embeddings`` are the model's (n, d) vectors of ``heldout.values`` (None: the
    embedding method is skipped).
    """
    runs: list[ProtocolRun] = []
    meta = heldout.meta
    n = len(meta)
    if n == 0:
        return runs
    kinds = pert_group(meta["pert_type"])
    vectors = {
        "embedding": embeddings,
        "zscore_cosine": heldout.values,
        "zscore_euclidean": heldout.values,
        "wtcs": heldout.values,
        "ncs": heldout.values,
    }
    metric_of = {
        "embedding": "cosine",
        "zscore_cosine": "cosine",
        "zscore_euclidean": "euclidean",
        "wtcs": "wtcs",
        "ncs": "ncs",
    }
    ncs_groups = (meta["cell_id"].astype(str) + "|" + meta["pert_type"].astype(str)).to_numpy()
    for protocol in config.protocols:
        if protocol in ("same_perturbagen", "replicates"):
            if protocol == "same_perturbagen":
                labels = meta["pert_id"].astype(str).to_numpy()
            else:
                labels = (
                    meta["pert_id"].astype(str)
                    + "|"
                    + meta["cell_id"].astype(str)
                    + "|"
                    + meta["pert_dose"].astype(str)
                    + "|"
                    + meta["pert_time"].astype(str)
                ).to_numpy()
            groups = _groups(
                kinds, meta["cell_id"].astype(str).to_numpy() if config.per_cell_line else None
            )
            clusters = meta["pert_id"].astype(str).to_numpy()
            for method in config.methods:
                x = vectors[method]
                if x is None:
                    continue
                queries = np.arange(n)
                if method in ("wtcs", "ncs") and n > config.max_wtcs_queries:
                    queries = np.sort(
                        np.random.default_rng(config.seed).choice(
                            n, config.max_wtcs_queries, replace=False
                        )
                    )
                log(f"{protocol} / {method}: {len(queries):,} queries x {n:,} candidates")
                result = retrieval(
                    x[queries],
                    labels[queries],
                    x,
                    labels,
                    metric=metric_of[method],
                    self_index=queries,
                    mode=config.mode,
                    n_sampled=config.n_sampled,
                    seed=config.seed,
                    wtcs_k=config.wtcs_k,
                    candidate_groups=ncs_groups if method == "ncs" else None,
                    block_size=len(queries) if method in ("wtcs", "ncs") else 256,
                )
                runs.append(
                    ProtocolRun(
                        protocol,
                        method,
                        result,
                        {g: m[queries] for g, m in groups.items()},
                        clusters[queries],
                    )
                )
        elif protocol in ("moa", "target"):
            runs.extend(_drug_level(heldout, embeddings, protocol, kinds, config, log, metric_of))
        else:
            raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    return runs


def _groups(kinds: np.ndarray, cells: np.ndarray | None) -> dict[str, np.ndarray]:
    groups = {"all": np.ones(len(kinds), bool)}
    for g in ("small_molecules", "genetic"):
        if (kinds == g).any():
            groups[g] = kinds == g
    if cells is not None:
        for c in sorted(set(cells)):
            groups[f"cell:{c}"] = cells == c
    return groups


def perturbagen_means(
    values: NDArray[np.floating], pert_ids: NDArray[np.str_], *, normalize: bool
) -> tuple[NDArray[np.str_], NDArray[np.float32]]:
    """Mean vector of each perturbagen's rows (re-normalized when ``normalize``)."""
    ids, inverse = np.unique(pert_ids, return_inverse=True)
    sums = np.zeros((len(ids), values.shape[1]), np.float64)
    np.add.at(sums, inverse, values)
    means = (sums / np.bincount(inverse)[:, None]).astype(np.float32)
    return ids, (normalize_rows(means) if normalize else means)


def _drug_level(heldout, embeddings, protocol, kinds, config, log, metric_of):
    meta = heldout.meta
    per_pert = meta.drop_duplicates("pert_id").set_index("pert_id")
    runs = []
    pert_ids = meta["pert_id"].astype(str).to_numpy()
    for method in config.methods:
        x = embeddings if method == "embedding" else heldout.values
        if x is None:
            continue
        ids, means = perturbagen_means(x, pert_ids, normalize=method == "embedding")
        annotation = per_pert.loc[ids, protocol].astype("string")
        ok = annotation.notna().to_numpy() & (annotation.fillna("").str.len() > 0).to_numpy()
        if ok.sum() < 2:
            log(f"{protocol}: fewer than 2 annotated held-out perturbagens; skipped")
            return []
        labels = annotation.to_numpy()[ok].astype(str)
        vecs = means[ok]
        log(f"{protocol} / {method}: {len(vecs):,} perturbagens")
        pkinds = pert_group(per_pert.loc[ids[ok], "pert_type"])
        result = retrieval(
            vecs,
            labels,
            vecs,
            labels,
            metric=metric_of[method],
            self_index=np.arange(len(vecs)),
            mode="exact",
            seed=config.seed,
            wtcs_k=config.wtcs_k,
            candidate_groups=pkinds if method == "ncs" else None,
        )
        runs.append(ProtocolRun(protocol, method, result, _groups(pkinds, None), ids[ok]))
    return runs
