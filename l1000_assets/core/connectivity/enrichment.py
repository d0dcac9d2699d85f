"""Statistics on the hits of a query: which MOAs and targets its top perturbagens share.

Two tests, for gene-set queries and profile read-across alike; the input is always the
query's full ranked list of perturbagens (best first) and their annotations.

* **Top N** (:func:`top_enrichment`): for each MOA and each target carried by at least one of
  the top ``n`` perturbagens, the hypergeometric probability of seeing at least that many
  among ``n`` draws from the ranked list (the background: every perturbagen ranked),
  with Benjamini-Hochberg FDRs over the terms tested, per kind of term
  (:func:`scipy.stats.false_discovery_control`), and the hits that carry each term.
* **Ranked list, no cut-off** (:func:`prerank`): GSEA's preranked test (Subramanian et al.
  2005, as gseapy's ``prerank``): the weighted Kolmogorov-Smirnov ES of the term's
  perturbagens down the list ranked by score, hits weighted by ``|score|`` (weight ``p = 1``),
  against random sets of the same size (gene-set permutation); NES = ES over the mean null
  ES of its sign; the nominal p-value is the fraction of same-signed null ES at least as
  extreme; the FDR is GSEA's: the fraction of all terms' null NES at least the NES among
  those of its sign, over the same fraction of the observed NES. Positive ES: the term's
  perturbagens gather at the top (mimickers), negative: at the bottom (reversers).

Annotations: ``moa`` and ``target`` strings, several values separated by ``|`` (CMap's
convention); blank and ``-666`` are unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from numpy.typing import NDArray
from scipy.stats import false_discovery_control, hypergeom

from l1000_assets.core.connectivity.kernels import es_from_hits

TERM_KINDS = ("moa", "target")
DEFAULT_TOP = 50
DEFAULT_PERMUTATIONS = 1000
ENRICHMENT_COLUMNS = [
    "test",
    "term_kind",
    "term",
    "n_hits_term",
    "n_hits",
    "n_term",
    "n_background",
    "fold_enrichment",
    "es",
    "nes",
    "p_value",
    "fdr",
    "hits",
]
_PERMUTATION_BLOCK = 100  # random orders of the list held at a time
_MISSING = {"", "-666", "na", "nan", "none"}


def display_names(pert_ids: Sequence[str], names: Sequence[object]) -> list[str]:
    """Names to list hits by: the perturbagen's name, with its id when another perturbagen
    of the list has the same name (several hairpins of one gene), the id when it has none."""
    ids = pd.Series(list(map(str, pert_ids)), dtype=object)
    labels = pd.Series(list(names), dtype=object)
    labels = labels.where(labels.notna(), ids).astype(str)
    repeated = labels.duplicated(keep=False)
    return labels.where(~repeated, labels + " (" + ids + ")").tolist()


def annotation_terms(annotations: pd.DataFrame, kinds: Sequence[str] = TERM_KINDS) -> pd.DataFrame:
    """One row per perturbagen and term it carries: ``pert_id``, ``term_kind``, ``term``
    (values split at ``|``; blanks and ``-666`` left out)."""
    ann = annotations.drop_duplicates("pert_id")
    parts = []
    for kind in kinds:
        if kind not in ann.columns:
            continue
        values = ann[["pert_id", kind]].dropna()
        split = values.assign(term=values[kind].astype(str).str.split("|")).explode("term")
        split["term"] = split["term"].str.strip()
        split = split[~split["term"].str.lower().isin(_MISSING)]
        parts.append(split[["pert_id", "term"]].assign(term_kind=kind))
    if not parts:
        return pd.DataFrame({"pert_id": [], "term_kind": [], "term": []}, dtype=object)
    terms = pd.concat(parts, ignore_index=True).drop_duplicates()
    return terms.astype({"pert_id": str})


def term_members(
    pert_ids: Sequence[str],
    annotations: pd.DataFrame,
    kinds: Sequence[str] = TERM_KINDS,
    *,
    terms: pd.DataFrame | None = None,
) -> dict[tuple[str, str], NDArray[np.int64]]:
    """``(kind, term) -> positions in pert_ids`` of the perturbagens that carry the term
    (``terms``: :func:`annotation_terms` of ``annotations``, when already at hand)."""
    terms = annotation_terms(annotations, kinds) if terms is None else terms
    position = pd.Index(list(map(str, pert_ids))).get_indexer(terms["pert_id"])
    found = terms.assign(position=position)[position >= 0]
    return {
        (kind, term): np.sort(group["position"].to_numpy(np.int64))
        for (kind, term), group in found.groupby(["term_kind", "term"], sort=True)
    }


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ENRICHMENT_COLUMNS})


def _fdr_by_kind(table: pd.DataFrame, column: str = "p_value") -> pd.Series:
    out = pd.Series(np.nan, index=table.index)
    for _, idx in table.groupby("term_kind").groups.items():
        p = table.loc[idx, column].to_numpy(float)
        out.loc[idx] = false_discovery_control(np.clip(p, 0.0, 1.0)) if len(p) else p
    return out


def top_enrichment(
    pert_ids: Sequence[str],
    names: Sequence[str],
    annotations: pd.DataFrame,
    *,
    top: int = DEFAULT_TOP,
    terms: pd.DataFrame | None = None,
    background: Sequence[str] | None = None,
) -> pd.DataFrame:
    """MOA and target over-representation among the first ``top`` of a ranked list.

    Parameters
    ----------
    pert_ids, names
        The ranked list, best first: perturbagen ids and the names listed as hits (its
        head is enough when ``background`` is given).
    annotations
        ``pert_id``, ``moa``, ``target``.
    top
        How many of the list count as hits.
    terms
        :func:`annotation_terms` of ``annotations``, when already at hand.
    background
        Every perturbagen that could have ranked (default: ``pert_ids``, the whole list).

    Returns
    -------
    pandas.DataFrame
        :data:`ENRICHMENT_COLUMNS` (``test`` = ``top_n``), one row per term carried by a hit,
        by ascending p-value.
    """
    universe = list(pert_ids) if background is None else list(background)
    n_background = len(universe)
    n = min(int(top), len(pert_ids), n_background)
    terms = annotation_terms(annotations) if terms is None else terms
    hits = term_members(list(pert_ids)[:n], annotations, terms=terms)
    sizes = {key: len(m) for key, m in term_members(universe, annotations, terms=terms).items()}
    rows = []
    for (kind, term), in_top in hits.items():
        m = sizes.get((kind, term), 0)
        if not m:
            continue
        rows.append(
            {
                "test": "top_n",
                "term_kind": kind,
                "term": term,
                "n_hits_term": len(in_top),
                "n_hits": n,
                "n_term": m,
                "n_background": n_background,
                "fold_enrichment": (len(in_top) / n) / (m / n_background),
                "es": np.nan,
                "nes": np.nan,
                "p_value": float(hypergeom.sf(len(in_top) - 1, n_background, m, n)),
                "hits": [str(names[i]) for i in in_top],
            }
        )
    if not rows:
        return _empty()
    table = pd.DataFrame(rows)
    table["fdr"] = _fdr_by_kind(table)
    return table.sort_values(["p_value", "term_kind", "term"], kind="stable")[
        ENRICHMENT_COLUMNS
    ].reset_index(drop=True)


def _es_of(positions: NDArray[np.int64], weights: NDArray[np.float64], n: int):
    """ES of one set (positions ascending) in a list of ``n`` with ``weights`` per position."""
    return float(es_from_hits(positions[None, :], weights[positions][None, :], n)[0])


def prerank(
    pert_ids: Sequence[str],
    names: Sequence[str],
    scores: NDArray[np.floating],
    annotations: pd.DataFrame,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    min_size: int = 5,
    max_size: int = 500,
    weight: float = 1.0,
    seed: int = 0,
    terms: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """GSEA preranked enrichment of MOAs and targets (module docstring).

    Parameters
    ----------
    pert_ids, names, scores
        The list ranked by ``scores``, highest first (ties in list order).
    annotations
        ``pert_id``, ``moa``, ``target``.
    permutations
        Random sets per term for the null.
    min_size, max_size
        Terms with fewer or more perturbagens in the list are left out (as gseapy).
    weight
        Hits weigh ``|score|^weight`` (gseapy's ``weight``; 0 is the classical KS).
    seed
        Seed of the random sets.
    terms
        :func:`annotation_terms` of ``annotations``, when already at hand.

    Returns
    -------
    pandas.DataFrame
        :data:`ENRICHMENT_COLUMNS` (``test`` = ``prerank``) by ascending FDR; ``hits`` is the
        leading edge (the term's perturbagens up to the ES's peak, or from its trough on).
    """
    scores = np.asarray(scores, np.float64)
    n = len(scores)
    if n and np.any(np.diff(scores) > 0):
        raise ValueError("scores must be sorted in descending order")
    w = np.abs(scores) ** weight if weight else np.ones(n)
    terms = [
        (key, members)
        for key, members in term_members(pert_ids, annotations, terms=terms).items()
        if min_size <= len(members) <= min(max_size, n - 1)
    ]
    if not terms:
        return _empty()
    rng = np.random.default_rng(seed)
    observed = np.array([_es_of(m, w, n) for _, m in terms])
    null = np.empty((len(terms), permutations))
    for p0 in range(0, permutations, _PERMUTATION_BLOCK):
        p1 = min(p0 + _PERMUTATION_BLOCK, permutations)
        # One random order of the list per permutation; a term of size G takes its first G.
        order = np.argsort(rng.random((p1 - p0, n)), axis=1)
        for t, (_, members) in enumerate(terms):
            pos = np.sort(order[:, : len(members)], axis=1)
            null[t, p0:p1] = es_from_hits(pos, w[pos], n)
    rows = []
    nes = np.full(len(terms), np.nan)
    null_nes = np.full(null.shape, np.nan)
    for t, ((kind, term), members) in enumerate(terms):
        es, nulls = observed[t], null[t]
        pos_mean = nulls[nulls >= 0].mean() if (nulls >= 0).any() else np.nan
        neg_mean = -nulls[nulls < 0].mean() if (nulls < 0).any() else np.nan
        same = nulls[nulls >= 0] if es >= 0 else nulls[nulls < 0]
        p = float((same >= es).mean() if es >= 0 else (same <= es).mean()) if len(same) else np.nan
        nes[t] = es / pos_mean if es >= 0 else es / neg_mean
        null_nes[t] = np.where(nulls >= 0, nulls / pos_mean, nulls / neg_mean)
        if es >= 0:
            leading = members[members <= _peak(members, w, n)]
        else:
            leading = members[members >= _trough(members, w, n)]
        rows.append(
            {
                "test": "prerank",
                "term_kind": kind,
                "term": term,
                "n_hits_term": len(leading),
                "n_hits": np.nan,
                "n_term": len(members),
                "n_background": n,
                "fold_enrichment": np.nan,
                "es": es,
                "nes": nes[t],
                "p_value": p,
                "hits": [str(names[i]) for i in leading],
            }
        )
    table = pd.DataFrame(rows)
    table["fdr"] = gsea_fdr(nes, null_nes)
    return table.sort_values(["fdr", "p_value", "term"], kind="stable")[
        ENRICHMENT_COLUMNS
    ].reset_index(drop=True)


def gsea_fdr(nes: NDArray[np.floating], null_nes: NDArray[np.floating]) -> NDArray[np.float64]:
    """GSEA's FDR q-values of observed ``nes`` ``(t,)`` given every term's null NES
    ``(t, permutations)``: for ``NES* >= 0``, the fraction of null NES ``>= NES*`` among
    null NES ``>= 0``, over the fraction of observed NES ``>= NES*`` among observed NES
    ``>= 0`` (mirrored for negative ones); capped at 1."""
    nes = np.asarray(nes, np.float64)
    flat = np.asarray(null_nes, np.float64).ravel()
    flat = flat[~np.isnan(flat)]
    out = np.full(len(nes), np.nan)
    null_pos, null_neg = np.sort(flat[flat >= 0]), np.sort(flat[flat < 0])
    obs = nes[~np.isnan(nes)]
    obs_pos, obs_neg = np.sort(obs[obs >= 0]), np.sort(obs[obs < 0])
    for i, x in enumerate(nes):
        if np.isnan(x):
            continue
        if x >= 0:
            null_frac = (len(null_pos) - np.searchsorted(null_pos, x)) / max(len(null_pos), 1)
            obs_frac = (len(obs_pos) - np.searchsorted(obs_pos, x)) / max(len(obs_pos), 1)
        else:
            null_frac = np.searchsorted(null_neg, x, side="right") / max(len(null_neg), 1)
            obs_frac = np.searchsorted(obs_neg, x, side="right") / max(len(obs_neg), 1)
        out[i] = min(1.0, null_frac / obs_frac) if obs_frac > 0 else 1.0
    return out


def _running(members: NDArray[np.int64], w: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    """The running sum at each hit, after it."""
    hit_w = w[members] if w[members].sum() > 0 else np.ones(len(members))
    return np.cumsum(hit_w) / hit_w.sum() - (members - np.arange(len(members))) / (n - len(members))


def _peak(members: NDArray[np.int64], w: NDArray[np.float64], n: int) -> int:
    """List position of the hit where the running sum peaks."""
    return int(members[int(np.argmax(_running(members, w, n)))])


def _trough(members: NDArray[np.int64], w: NDArray[np.float64], n: int) -> int:
    """List position of the first hit after the running sum's trough."""
    hit_w = w[members] if w[members].sum() > 0 else np.ones(len(members))
    before = _running(members, w, n) - hit_w / hit_w.sum()
    return int(members[int(np.argmin(before))])


def read_across_enrichment(
    results_path: str | Path,
    queries_path: str | Path,
    perturbagen_embeddings: str | Path,
    perturbagens_paths: Sequence[str | Path],
    *,
    top: int = DEFAULT_TOP,
    with_prerank: bool = False,
    permutations: int = DEFAULT_PERMUTATIONS,
    pert_type: str | None = None,
) -> pd.DataFrame:
    """The same statistics for the profile read-across: each query profile's full ranked
    list of perturbagens (cosine of its embedding, ``queries.parquet``, with the perturbagen
    embeddings of the cell scope it was ranked in, from ``results.parquet``; optionally of
    one ``pert_type``). Rows carry ``source`` = ``read_across`` and the query's file, path
    and profile id (``query_name``)."""
    from l1000_assets.core.embeddings.vectors import EMBEDDING_COLUMN, vector_matrix
    from l1000_assets.core.readacross.ranking import load_references, read_annotations

    queries = pq.read_table(queries_path)
    hits = pq.read_table(results_path, columns=["query_path", "query_id", "cell_id"]).to_pandas()
    scope = hits.drop_duplicates(["query_path", "query_id"]).set_index(["query_path", "query_id"])
    annotations = read_annotations(perturbagens_paths)
    vectors = vector_matrix(queries.column(EMBEDDING_COLUMN))
    meta = queries.drop_columns([EMBEDDING_COLUMN]).to_pandas()
    references: dict[object, object] = {}
    terms = annotation_terms(annotations)
    tables = []
    for i, row in meta.iterrows():
        key = (row["query_path"], row["query_id"])
        cell = scope["cell_id"].get(key) if key in scope.index else None
        cell = None if cell is None or pd.isna(cell) else str(cell)
        if cell not in references:
            references[cell] = load_references(
                perturbagen_embeddings, annotations, cell=cell, pert_type=pert_type
            )
        refs = references[cell]
        sims = refs.vectors @ vectors[i]
        order = np.argsort(-sims, kind="stable")
        ids = refs.pert_id[order].tolist()
        names = display_names(ids, refs.pert_iname[order].tolist())
        parts = [top_enrichment(ids, names, annotations, top=top, terms=terms)]
        if with_prerank:
            parts.append(
                prerank(
                    ids, names, sims[order], annotations, permutations=permutations, terms=terms
                )
            )
        table = pd.concat([p for p in parts if len(p)] or [_empty()], ignore_index=True)
        tables.append(
            table.assign(
                source="read_across",
                query_file=row["query_file"],
                query_path=row["query_path"],
                query_name=row["query_id"],
                method="embedding",
                direction="mimickers",
            )
        )
    return pd.concat(tables, ignore_index=True) if tables else _empty()
