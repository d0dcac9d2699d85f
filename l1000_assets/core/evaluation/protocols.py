"""The paper's evaluation protocols, every method on the same queries.

Protocols (Donner et al. 2018; ``../shared/docs/science.md`` section 3), on one split's
held-out perturbagens (:func:`run_protocols`):

``same_perturbagen``
    Every held-out profile is a query; positives are the other held-out profiles of the
    same perturbagen, negatives the held-out profiles of other perturbagens.
``replicates``
    Positives are biological replicates: same perturbagen, cell line, dose and time;
    negatives every held-out profile of another condition.
``moa`` / ``target`` (drug level, compounds only)
    A compound's vector is the mean of its profiles' vectors (re-normalized for the
    embedding; the mean z-score profile for the baselines); positives are the other
    compounds that share the annotation, negatives those that do not. Only compounds
    (``trt_cp``) are queries and candidates, as in the paper's Table 2: a genetic
    perturbagen "targets" its gene, often with the opposite sign. Unannotated compounds are
    left out.

and, with the model trained on every perturbagen (:func:`run_direct`):

``moa_direct`` / ``target_direct``
    The drug-level protocols over every compound of the lake, as the paper's "direct
    training" (its Table 2): the model has seen every compound as a class, never its
    annotation. Vectors are streamed from the lake (:func:`load_perturbagen_means`).

Methods (:data:`METHOD_SPECS`, one entry each, so that a method is added in one place):
``embedding`` (cosine of the deep embedding), ``zscore_cosine``, ``zscore_euclidean``,
``wtcs`` (CMap connectivity of the query's top and bottom 150 landmark genes), at drug
level ``tanimoto`` (ECFP4 Tanimoto of the compounds' structures, the paper's Table 2
baseline) and ``combo`` (the paper's: the unweighted mean of the embedding's cosine and the
Tanimoto) when fingerprints are given (:class:`Fingerprints`; a compound without a SMILES
has an empty fingerprint, Tanimoto 0 with every other, so the queries stay those of the
other methods), and, on request, ``ncs`` (WTCS normalized within the candidates' cell line
and perturbagen type, with the held-out candidates as the reference set; twice the cost of
WTCS). Every method
ranks the same queries against the same candidates, except that WTCS and NCS, about a
thousand times the cost of a dot product, score at most ``max_wtcs_queries`` seeded queries
(against every candidate); the counts of queries and positives go with every figure.
CMap's tau is not offered: it needs a fixed reference set of queries (CMap's Touchstone)
that a held-out evaluation does not have.

Each run keeps, per query, its kind (``small_molecules``, ``genetic``, ``other``), cell
line (profile-level protocols) and perturbagen, so that the report
(:mod:`~l1000_assets.core.evaluation.report`) can pool the ranks of several splits and
group them afterwards. Drug-level runs also keep each positive's pair Tanimoto (when
fingerprints are given), for the breakdown of drug-level retrieval by the structural
similarity of the pair (:func:`~l1000_assets.core.evaluation.report.structure_breakdown`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from l1000_assets.core.embeddings.vectors import normalize_rows
from l1000_assets.core.evaluation.retrieval import FINGERPRINT_BITS, RetrievalResult, retrieval
from l1000_assets.core.lake.read import landmark_matrix
from l1000_assets.core.lake.schema import VALUES_COLUMN
from l1000_assets.core.model.normalization import perturbagen_batches
from l1000_assets.core.progress import Log
from l1000_assets.core.releases.schema import GENETIC_PERT_TYPES

PROTOCOLS = ("same_perturbagen", "replicates", "moa", "target")
"""Protocols on a split's held-out perturbagens."""
DIRECT_PROTOCOLS = ("moa_direct", "target_direct")
"""Drug-level protocols of the model trained on every perturbagen (the ``all`` split)."""
DRUG_LEVEL = {"moa": "moa", "target": "target", "moa_direct": "moa", "target_direct": "target"}
"""Drug-level protocol -> the annotation its positives share."""
COMPOUND = "trt_cp"


@dataclass(frozen=True)
class Method:
    """A retrieval method: the vectors it scores (``embedding``: the model's, ``zscore``: the
    level-4 landmark z-scores), its similarity (:func:`~l1000_assets.core.evaluation.
    retrieval.retrieval`'s ``metric``) and whether it is too costly for every query (then
    at most ``max_wtcs_queries`` seeded queries)."""

    name: str
    vectors: str
    metric: str
    subsampled: bool = False
    drug_level_only: bool = False


METHOD_SPECS = {
    m.name: m
    for m in (
        Method("embedding", "embedding", "cosine"),
        Method("zscore_cosine", "zscore", "cosine"),
        Method("zscore_euclidean", "zscore", "euclidean"),
        Method("wtcs", "zscore", "wtcs", subsampled=True),
        Method("ncs", "zscore", "ncs", subsampled=True),
        Method("tanimoto", "fingerprint", "tanimoto", drug_level_only=True),
        Method("combo", "combo", "combo", drug_level_only=True),
    )
}
METHODS = tuple(METHOD_SPECS)
DEFAULT_METHODS = (
    "embedding",
    "zscore_cosine",
    "zscore_euclidean",
    "wtcs",
    "tanimoto",
    "combo",
)
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
class Fingerprints:
    """Compound structures for the drug-level methods: ``pert_ids`` and their ``(n, 256)``
    bit-packed ECFP4 fingerprints (``compound_fingerprints``)."""

    pert_ids: NDArray[np.str_]
    packed: NDArray[np.uint8]

    def bits(self, ids: NDArray[np.str_]) -> tuple[NDArray[np.float32], int]:
        """``(len(ids), 2048)`` 0/1 float32 bits of ``ids`` (empty where a compound has no
        fingerprint) and how many have none."""
        out = np.zeros((len(ids), FINGERPRINT_BITS), np.float32)
        row = {p: i for i, p in enumerate(self.pert_ids.astype(str))}
        where = np.array([row.get(str(p), -1) for p in ids], np.int64)
        found = where >= 0
        if found.any():
            out[found] = np.unpackbits(self.packed[where[found]], axis=1)[:, :FINGERPRINT_BITS]
        return out, int((~found).sum())


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
    """One protocol for one method on one split: the retrieval result and, per query (in
    the result's query order), its kind, cell line (``None`` at drug level) and
    perturbagen (the bootstrap's cluster)."""

    protocol: str
    method: str
    result: RetrievalResult
    query_kinds: NDArray[np.str_]
    query_cells: NDArray[np.str_] | None
    query_clusters: NDArray[np.str_]
    pair_tanimoto: NDArray[np.float32] | None = None
    """Drug level, with fingerprints: the Tanimoto of each positive's (query, positive)."""


@dataclass
class EvaluationConfig:
    protocols: Sequence[str] = PROTOCOLS
    methods: Sequence[str] = DEFAULT_METHODS
    mode: str = "exact"
    n_sampled: int = 10_000
    max_wtcs_queries: int = 1000
    wtcs_k: int = 150
    seed: int = 0


def _check(protocols: Sequence[str], allowed: Sequence[str], methods: Sequence[str]) -> None:
    for protocol in protocols:
        if protocol not in allowed:
            raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(allowed)}")
    for method in methods:
        if method not in METHOD_SPECS:
            raise ValueError(f"unknown method {method!r}; one of {', '.join(METHODS)}")


def _query_subset(n: int, method: Method, config: EvaluationConfig) -> NDArray[np.intp]:
    if method.subsampled and n > config.max_wtcs_queries:
        rng = np.random.default_rng(config.seed)
        return np.sort(rng.choice(n, config.max_wtcs_queries, replace=False))
    return np.arange(n)


def run_protocols(
    heldout: HeldOut,
    embeddings: NDArray[np.float32] | None,
    config: EvaluationConfig,
    log: Log = lambda m: None,
    fingerprints: Fingerprints | None = None,
) -> list[ProtocolRun]:
    """Every protocol x method on one split's held-out profiles.

    ``embeddings`` are the model's (n, d) vectors of ``heldout.values`` (None: the
    embedding method is skipped); ``fingerprints`` the compounds' structures (None: the
    ``tanimoto`` and ``combo`` methods are skipped).
    """
    _check(config.protocols, PROTOCOLS, config.methods)
    runs: list[ProtocolRun] = []
    meta = heldout.meta
    n = len(meta)
    if n == 0:
        return runs
    vectors = {"embedding": embeddings, "zscore": heldout.values}
    kinds = pert_group(meta["pert_type"])
    cells = meta["cell_id"].astype(str).to_numpy()
    clusters = meta["pert_id"].astype(str).to_numpy()
    ncs_groups = (meta["cell_id"].astype(str) + "|" + meta["pert_type"].astype(str)).to_numpy()
    for protocol in config.protocols:
        if protocol in DRUG_LEVEL:
            compounds = (meta["pert_type"].astype(str) == COMPOUND).to_numpy()
            pert_ids = clusters[compounds]
            per_pert = meta[compounds].drop_duplicates("pert_id").set_index("pert_id")
            means = {}
            for space, x in vectors.items():
                if x is not None:
                    ids, means[space] = perturbagen_means(
                        x[compounds], pert_ids, normalize=space == "embedding"
                    )
            if not means:
                continue
            annotations = per_pert.loc[ids, DRUG_LEVEL[protocol]]
            _add_structure(means, ids, fingerprints, log)
            runs.extend(_drug_level(protocol, ids, means, annotations, config, log))
            continue
        if protocol == "same_perturbagen":
            labels = clusters
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
        for name in config.methods:
            method = METHOD_SPECS[name]
            x = vectors.get(method.vectors)
            if x is None or method.drug_level_only:
                continue
            queries = _query_subset(n, method, config)
            log(f"{protocol} / {name}: {len(queries):,} queries x {n:,} candidates")
            result = retrieval(
                x[queries],
                labels[queries],
                x,
                labels,
                metric=method.metric,
                self_index=queries,
                mode=config.mode,
                n_sampled=config.n_sampled,
                seed=config.seed,
                wtcs_k=config.wtcs_k,
                candidate_groups=ncs_groups if method.metric == "ncs" else None,
                block_size=len(queries) if method.subsampled else 256,
            )
            runs.append(
                ProtocolRun(
                    protocol, name, result, kinds[queries], cells[queries], clusters[queries]
                )
            )
    return runs


def perturbagen_means(
    values: NDArray[np.floating], pert_ids: NDArray[np.str_], *, normalize: bool
) -> tuple[NDArray[np.str_], NDArray[np.float32]]:
    """Mean vector of each perturbagen's rows (re-normalized when ``normalize``)."""
    ids, inverse = np.unique(pert_ids, return_inverse=True)
    sums = np.zeros((len(ids), values.shape[1]), np.float64)
    np.add.at(sums, inverse, values)
    means = (sums / np.bincount(inverse)[:, None]).astype(np.float32)
    return ids, (normalize_rows(means) if normalize else means)


@dataclass
class PerturbagenMeans:
    """One row per perturbagen: ``ids`` and, per kind of vector (``zscore``,
    ``embedding``), the mean of its profiles' vectors (the embedding's re-normalized)."""

    ids: NDArray[np.str_]
    vectors: dict[str, NDArray[np.float32]]
    n_profiles: NDArray[np.int64]


def load_perturbagen_means(
    files: Sequence[Path],
    pert_ids: set[str],
    embed: Callable[[NDArray[np.float32]], NDArray[np.float32]] | None,
    *,
    batch_size: int = 32_768,
) -> PerturbagenMeans:
    """Per-perturbagen mean z-score profile and (with ``embed``) mean embedding of the lake's
    profiles of ``pert_ids``, streamed by batch: memory is one batch plus the sums
    (perturbagens x (978 + d) float64), never the profiles."""
    ids = np.array(sorted(pert_ids), dtype=str)
    code = {p: i for i, p in enumerate(ids)}
    sums: dict[str, np.ndarray] = {}
    counts = np.zeros(len(ids), np.int64)
    for batch in perturbagen_batches(files, pert_ids, ["pert_id", VALUES_COLUMN], batch_size):
        rows = np.array(
            [code[p] for p in batch.column("pert_id").to_numpy(zero_copy_only=False)], np.int64
        )
        x = landmark_matrix(batch)
        parts = {"zscore": x}
        if embed is not None:
            parts["embedding"] = embed(x)
        for space, v in parts.items():
            acc = sums.setdefault(space, np.zeros((len(ids), v.shape[1]), np.float64))
            np.add.at(acc, rows, v)
        counts += np.bincount(rows, minlength=len(ids))
    seen = counts > 0
    vectors = {}
    for space, acc in sums.items():
        means = (acc[seen] / counts[seen, None]).astype(np.float32)
        vectors[space] = normalize_rows(means) if space == "embedding" else means
    return PerturbagenMeans(ids[seen], vectors, counts[seen])


def run_direct(
    means: PerturbagenMeans,
    perturbagens: pd.DataFrame,
    config: EvaluationConfig,
    log: Log = lambda m: None,
    fingerprints: Fingerprints | None = None,
) -> list[ProtocolRun]:
    """The drug-level protocols over every compound of ``means`` (from the model trained on
    every perturbagen): ``config.protocols`` among :data:`DIRECT_PROTOCOLS`.

    ``perturbagens`` has ``pert_id``, ``pert_type``, ``moa`` and ``target``; only compounds
    are queries and candidates.
    """
    _check(config.protocols, DIRECT_PROTOCOLS, config.methods)
    info = perturbagens.drop_duplicates("pert_id").set_index("pert_id")
    known = np.isin(means.ids, info.index)
    compound = np.zeros(len(means.ids), bool)
    compound[known] = (info.loc[means.ids[known], "pert_type"].astype(str) == COMPOUND).to_numpy()
    ids = means.ids[compound]
    vectors = {space: v[compound] for space, v in means.vectors.items()}
    _add_structure(vectors, ids, fingerprints, log)
    runs = []
    for protocol in config.protocols:
        annotations = info.loc[ids, DRUG_LEVEL[protocol]]
        runs.extend(_drug_level(protocol, ids, vectors, annotations, config, log))
    return runs


def _add_structure(
    vectors: dict[str, NDArray[np.float32]],
    ids: NDArray[np.str_],
    fingerprints: Fingerprints | None,
    log: Log,
) -> None:
    """The drug-level methods' vectors of the compounds ``ids``, in place: ``fingerprint``
    (0/1 bits) and, with the embedding, ``combo`` (the embedding, then the bits)."""
    if fingerprints is None or "fingerprint" in vectors:
        return
    bits, missing = fingerprints.bits(ids)
    if missing:
        log(f"{missing:,} of {len(ids):,} compounds without a fingerprint: Tanimoto 0")
    vectors["fingerprint"] = bits
    if "embedding" in vectors:
        vectors["combo"] = np.concatenate([vectors["embedding"], bits], axis=1)


def positive_pairs(
    result: RetrievalResult, labels: NDArray, queries: NDArray[np.intp]
) -> NDArray[np.int64]:
    """The candidate index of each positive of ``result`` (queries ``queries`` of the
    candidates ``labels``, each query among the candidates): :func:`retrieval` lists a
    query's positives in candidate order, its queries in the caller's order."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    codes, starts = np.unique(labels[order], return_index=True)
    stops = np.append(starts[1:], len(order))
    out = np.empty(len(result.quantiles), np.int64)
    qi = result.query_index
    bounds = np.flatnonzero(np.diff(qi)) + 1
    for a, z in zip(np.concatenate([[0], bounds]), np.append(bounds, len(qi))):
        if z <= a:
            continue
        row = int(queries[qi[a]])
        k = int(np.searchsorted(codes, labels[row]))
        members = order[starts[k] : stops[k]]
        members = members[members != row]
        if len(members) != z - a:
            raise AssertionError("positives out of step with the labels")
        out[a:z] = members
    return out


def _drug_level(
    protocol: str,
    ids: NDArray[np.str_],
    vectors: dict[str, NDArray[np.float32]],
    annotations: pd.Series,
    config: EvaluationConfig,
    log: Log,
) -> list[ProtocolRun]:
    """One drug-level protocol: every annotated compound queries the others."""
    annotation = annotations.astype("string")
    ok = (annotation.notna() & (annotation.fillna("").str.len() > 0)).to_numpy()
    if ok.sum() < 2:
        log(f"{protocol}: fewer than 2 annotated compounds; skipped")
        return []
    labels = annotation.to_numpy()[ok].astype(str)
    clusters = ids[ok]
    kinds = np.full(len(clusters), "small_molecules")
    runs = []
    bits = vectors["fingerprint"][ok] if "fingerprint" in vectors else None
    on = bits.sum(axis=1) if bits is not None else None
    for name in config.methods:
        method = METHOD_SPECS[name]
        if method.vectors not in vectors:
            continue
        vecs = vectors[method.vectors][ok]
        queries = _query_subset(len(vecs), method, config)
        log(f"{protocol} / {name}: {len(queries):,} of {len(vecs):,} compounds")
        result = retrieval(
            vecs[queries],
            labels[queries],
            vecs,
            labels,
            metric=method.metric,
            self_index=queries,
            mode="exact",
            seed=config.seed,
            wtcs_k=config.wtcs_k,
            candidate_groups=kinds if method.metric == "ncs" else None,
        )
        pair = None
        if bits is not None and len(result.quantiles):
            j = positive_pairs(result, labels, queries)
            i = queries[result.query_index]
            inter = np.einsum("ij,ij->i", bits[i], bits[j])
            union = on[i] + on[j] - inter
            pair = np.where(union > 0, inter / np.maximum(union, 1), 0.0).astype(np.float32)
        runs.append(
            ProtocolRun(protocol, name, result, kinds[queries], None, clusters[queries], pair)
        )
    return runs
