"""The gene-set query engine: query files in, ranked perturbagens and hit statistics out.

:class:`ConnectivityEngine` holds the signature store, the tau reference, the gene space
and the perturbagen annotations, loaded once (and, for the ``embedding`` method, the model
and the signature embeddings, loaded when first needed). :meth:`ConnectivityEngine.run`
scores checked queries (:mod:`~l1000_assets.core.connectivity.gene_sets`) by one method,
ranks mimickers (highest scores first) or reversers (lowest first) at one level, and
computes the statistics on the hits (:mod:`~l1000_assets.core.connectivity.enrichment`).

The ``embedding`` method projects a query into the model's input space: +1 on its up
landmark genes, -1 on its down ones, 0 on the other landmarks, scaled to the norm of a
typical signature of the store
(:func:`~l1000_assets.core.connectivity.scoring.landmark_profile`); the model embeds that
profile and each signature scores the cosine similarity of its embedding
(``signature_embeddings``, the mean of its profiles' embeddings). Only a query's landmark
genes reach the model (about 1 in 10 of a BING set).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import false_discovery_control

from l1000_assets.core.connectivity.enrichment import (
    DEFAULT_PERMUTATIONS,
    DEFAULT_TOP,
    annotation_terms,
    display_names,
    prerank,
    top_enrichment,
)
from l1000_assets.core.connectivity.gene_sets import (
    GeneSetOptions,
    GeneSetQuery,
    RawQuery,
    read_gene_set_files,
    resolve_query,
)
from l1000_assets.core.connectivity.genes import GeneSpace, read_gene_tables
from l1000_assets.core.connectivity.reference import Reference
from l1000_assets.core.connectivity.results import RANKING_COLUMNS
from l1000_assets.core.connectivity.scoring import (
    DIRECTIONS,
    LEVELS,
    METHODS,
    Levels,
    landmark_profile,
    maxq,
    normalized,
    query_wtcs,
    rank_test,
    tau_scores,
)
from l1000_assets.core.connectivity.store import Segments, SignatureStore, segments_of
from l1000_assets.core.errors import L1000InputError

DEFAULT_RESULT_TOP = 20
_QUERY_CHUNK = 16  # queries scored together


@dataclass(frozen=True)
class QueryOptions:
    """How queries are scored and reported."""

    method: str = "tau"
    direction: str = "mimickers"
    level: str = "perturbagen"
    top: int = DEFAULT_RESULT_TOP
    cell: str | None = None
    pert_type: str | None = None
    genes: GeneSetOptions = field(default_factory=GeneSetOptions)
    enrichment_top: int = DEFAULT_TOP
    prerank: bool = False
    permutations: int = DEFAULT_PERMUTATIONS
    keep_ranking: bool = False  # keep every row of the level, not only the top

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("method", self.method, METHODS),
            ("direction", self.direction, DIRECTIONS),
            ("level", self.level, LEVELS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, not {value!r}")
        if self.top < 1 or self.enrichment_top < 1:
            raise ValueError("top and enrichment_top must be at least 1")


@dataclass
class QueryResult:
    """One query's outcome: its ranking at the requested level, best first (the top rows,
    or all with ``keep_ranking``), the perturbagen-level statistics on the hits, and the
    time it took. What a result holds does not grow with the store unless asked."""

    query: GeneSetQuery
    ranking: pd.DataFrame
    enrichment: pd.DataFrame
    seconds: float
    options: QueryOptions

    @property
    def hits(self) -> pd.DataFrame:
        return self.ranking.head(self.options.top)


@dataclass
class QueryFailure:
    """A query (or a whole file) refused, with the reason."""

    files: tuple[Path, ...]
    name: str | None
    message: str


@dataclass
class _SignatureScores:
    """Per-signature scores of a chunk of queries, ``(q, len(cols))`` each."""

    wtcs: NDArray[np.float32]
    ncs: NDArray[np.float32]
    tau: NDArray[np.float32] | None
    extra: dict[str, NDArray[np.floating]]
    score: NDArray[np.floating]


class ConnectivityEngine:
    """Everything a gene-set query needs, loaded once.

    Parameters
    ----------
    store_dir
        The ``connectivity_signatures`` store.
    genes_paths, perturbagens_paths
        The lake's ``genes`` and ``perturbagens`` tables.
    reference_dir
        The ``connectivity_reference`` directory (needed for tau).
    model_dir, signature_embeddings
        The served model and its signature embeddings (needed for the embedding method).
    """

    def __init__(
        self,
        store_dir: str | Path,
        genes_paths: Sequence[str | Path],
        perturbagens_paths: Sequence[str | Path],
        *,
        reference_dir: str | Path | None = None,
        model_dir: str | Path | None = None,
        signature_embeddings: str | Path | None = None,
    ):
        from l1000_assets.core.readacross.ranking import read_annotations

        self.store = SignatureStore(store_dir)
        self.space = GeneSpace.from_tables(
            read_gene_tables(genes_paths), self.store.genes["gene_id"].astype(str).tolist()
        )
        annotations = read_annotations(perturbagens_paths)
        self.annotations = annotations
        self._terms = annotation_terms(annotations)
        index = self.store.index
        # The index columns a result row shows, as object arrays once (not per query).
        self._meta = {
            c: index[c].astype(object).where(index[c].notna(), None).to_numpy(object)
            for c in ("pert_id", "pert_iname", "pert_type", "cell_id", "sig_id")
        }
        ann = annotations.set_index("pert_id")
        pert_ids = index["pert_id"].astype(str)
        for kind in ("moa", "target"):
            self._meta[kind] = (
                pert_ids.map(ann[kind]).astype(object).to_numpy(object)
                if len(ann)
                else np.full(len(index), None, object)
            )
        self.reference: Reference | None = None
        self._reference_error: str | None = None
        if reference_dir is not None:
            try:
                self.reference = Reference(reference_dir, self.store)
            except L1000InputError as exc:
                self._reference_error = str(exc)
        else:
            self._reference_error = "no tau reference given"
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._signature_embeddings = (
            Path(signature_embeddings) if signature_embeddings is not None else None
        )
        self._embedding: tuple | None = None

    # -- reading queries ----------------------------------------------------------------
    def read(
        self, paths: Sequence[str | Path], options: QueryOptions = QueryOptions()
    ) -> tuple[list[GeneSetQuery], list[QueryFailure]]:
        """Parse and check the queries of gene-set files; refused files and queries are
        returned as failures (one per file or query)."""
        queries, failures = [], []
        for path in map(Path, paths):
            try:
                parsed = read_gene_set_files([path])
            except L1000InputError as exc:
                failures.append(QueryFailure((path,), None, str(exc)))
                continue
            for _, raws in parsed:
                q, f = self.check(raws, options)
                queries += q
                failures += f
        return queries, failures

    def check(
        self, raws: Sequence[RawQuery], options: QueryOptions = QueryOptions()
    ) -> tuple[list[GeneSetQuery], list[QueryFailure]]:
        queries, failures = [], []
        for raw in raws:
            try:
                queries.append(resolve_query(raw, self.space, options.genes))
            except L1000InputError as exc:
                failures.append(QueryFailure(raw.files, raw.name, str(exc)))
        return queries, failures

    # -- scoring --------------------------------------------------------------------------
    def run(
        self, queries: Sequence[GeneSetQuery], options: QueryOptions = QueryOptions()
    ) -> list[QueryResult]:
        """Score, rank and summarize ``queries``.

        Raises
        ------
        L1000InputError
            For an unknown cell line or perturbagen type (naming the store's index and what
            it has), tau without a reference, or the embedding method without a model.
        """
        if options.method == "tau" and self.reference is None:
            raise L1000InputError(
                self.store.path,
                f"tau needs the reference: {self._reference_error}; or choose another method",
            )
        cols = self.store.columns(cell=options.cell, pert_type=options.pert_type)
        levels = Levels.of(self.store, cols)
        pert_sigs = segments_of(self.store.pert_codes[cols])[1]
        out = []
        for q0 in range(0, len(queries), _QUERY_CHUNK):
            chunk = list(queries[q0 : q0 + _QUERY_CHUNK])
            t0 = time.perf_counter()
            scores = self._signature_scores(chunk, cols, options)
            per_query = (time.perf_counter() - t0) / len(chunk)
            for i, query in enumerate(chunk):
                t1 = time.perf_counter()
                frames = self._frames(scores, i, cols, levels, pert_sigs, options)
                ranking = frames[options.level]
                enrichment = self._enrichment(frames["perturbagen"], options)
                if not options.keep_ranking:
                    ranking = ranking.head(options.top).copy()
                del frames
                out.append(
                    QueryResult(
                        query,
                        ranking,
                        enrichment,
                        per_query + time.perf_counter() - t1,
                        options,
                    )
                )
        return out

    def _signature_scores(
        self, queries: list[GeneSetQuery], cols: NDArray[np.int64], options: QueryOptions
    ) -> _SignatureScores:
        store = self.store
        ups = [q.up_rows for q in queries]
        downs = [q.down_rows for q in queries]
        wtcs, _, _ = query_wtcs(store, ups, downs, cols)
        groups = store.group_codes
        ncs = normalized(wtcs, groups[cols], int(groups.max()) + 1)
        tau = (
            tau_scores(ncs, self.reference.quantiles["signature"], cols)
            if self.reference is not None
            else None
        )
        extra: dict[str, NDArray[np.floating]] = {}
        score: NDArray[np.floating]
        if options.method == "mwu":
            z_up, p_up = rank_test(store, ups, cols)
            z_down, p_down = rank_test(store, downs, cols)
            score = np.where(
                np.isnan(z_up), -z_down, np.where(np.isnan(z_down), z_up, z_up - z_down)
            )
            extra = {
                "z_up": z_up,
                "z_down": -z_down,  # as SigCom reports it: positive when down genes rank low
                "fdr_up": _fdr_rows(p_up),
                "fdr_down": _fdr_rows(p_down),
            }
        elif options.method == "embedding":
            score = self._similarity(queries, cols)
            extra = {"similarity": score}
        else:
            score = {"wtcs": wtcs, "ncs": ncs, "tau": tau}[options.method]
        return _SignatureScores(wtcs, ncs, tau, extra, score)

    def _frames(
        self,
        s: _SignatureScores,
        i: int,
        cols: NDArray[np.int64],
        levels: Levels,
        pert_sigs: Segments,
        options: QueryOptions,
    ) -> dict[str, pd.DataFrame]:
        """Query ``i``'s rankings at its level, and per perturbagen (for the statistics)."""
        reversers = options.direction == "reversers"
        sig = {"wtcs": s.wtcs[i], "ncs": s.ncs[i], "score": s.score[i]}
        if s.tau is not None:
            sig["tau"] = s.tau[i]
        sig.update({name: values[i] for name, values in s.extra.items()})
        frames = {}
        if options.level == "signature":
            ones = np.ones(len(cols), np.int64)
            frames["signature"] = self._frame(cols, sig, ones, ones, reversers)
        # A perturbagen in a cell line: the maximum quantile over its signatures; tau
        # against the reference summarized the same way. Then over its cell lines.
        summarized = ("wtcs", "ncs", "score", "similarity")
        cell = {k: maxq(sig[k], levels.cell_segments)[0] for k in summarized if k in sig}
        if s.tau is not None:
            cell["tau"] = tau_scores(
                cell["ncs"][None], self.reference.quantiles["cell"], levels.pert_cells
            )[0]
        if options.method == "tau":
            cell["score"] = cell["tau"]
        best = _best(sig["score"], levels.cell_segments, reversers)
        cell_sizes = np.diff(levels.cell_segments.offsets)
        frames["cell"] = self._frame(
            cols[best], {**_at(sig, best), **cell}, cell_sizes, np.ones_like(cell_sizes), reversers
        )
        if options.cell is not None:  # one cell line: its summary is the perturbagen's
            frames["perturbagen"] = frames["cell"]
            return frames
        pert = {k: maxq(v, levels.pert_segments)[0] for k, v in cell.items() if k != "tau"}
        if s.tau is not None:
            pert["tau"] = tau_scores(
                pert["ncs"][None], self.reference.quantiles["perturbagen"], levels.perts
            )[0]
        if options.method == "tau":
            pert["score"] = pert["tau"]
        best = _best(sig["score"], pert_sigs, reversers)
        frame = self._frame(
            cols[best],
            {**_at(sig, best), **pert},
            np.diff(pert_sigs.offsets),
            np.diff(levels.pert_segments.offsets),
            reversers,
        )
        frame["cell_id"] = None
        frames["perturbagen"] = frame
        return frames

    def _frame(
        self,
        sig_cols: NDArray[np.int64],
        values: dict[str, NDArray[np.floating]],
        n_signatures: NDArray[np.integer],
        n_cell_lines: NDArray[np.integer],
        reversers: bool,
    ) -> pd.DataFrame:
        """A level's rows ranked in the direction, their metadata from the (best) signature
        of each, ``sig_cols``."""
        frame = pd.DataFrame(
            {
                **{c: v[sig_cols] for c, v in self._meta.items()},
                "n_cell_lines": np.asarray(n_cell_lines, np.int64),
                "n_signatures": np.asarray(n_signatures, np.int64),
                **{k: v for k, v in values.items() if k in RANKING_COLUMNS},
            }
        )
        n = len(frame)
        # Ties (tau saturates at +/-100) are broken by NCS, then WTCS.
        keys = [_sort_key(frame[c].to_numpy(float), reversers) for c in ("wtcs", "ncs", "score")]
        order = np.lexsort((np.arange(n), *keys))
        frame = frame.iloc[order].reset_index(drop=True)
        frame.insert(0, "rank", np.arange(1, n + 1, dtype=np.int64))
        return frame[[c for c in RANKING_COLUMNS if c in frame.columns]]

    def _enrichment(self, perts: pd.DataFrame, options: QueryOptions) -> pd.DataFrame:
        """Top-N MOA/target enrichment among the perturbagen-level hits (and, on request,
        the ranked-list test over every perturbagen)."""
        names = display_names(perts["pert_id"], perts["pert_iname"])
        tables = [
            top_enrichment(
                perts["pert_id"].tolist(),
                names,
                self.annotations,
                top=options.enrichment_top,
                terms=self._terms,
            )
        ]
        if options.prerank:
            scores = perts["score"].to_numpy(float)
            keep = ~np.isnan(scores)
            order = np.argsort(-scores[keep], kind="stable")
            ranked = perts[keep].iloc[order]
            tables.append(
                prerank(
                    ranked["pert_id"].tolist(),
                    display_names(ranked["pert_id"], ranked["pert_iname"]),
                    ranked["score"].to_numpy(float),
                    self.annotations,
                    permutations=options.permutations,
                    terms=self._terms,
                )
            )
        return (
            pd.concat([t for t in tables if len(t)], ignore_index=True)
            if any(len(t) for t in tables)
            else tables[0]
        )

    # -- the embedding method -------------------------------------------------------------
    def _similarity(
        self, queries: list[GeneSetQuery], cols: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        model, gene_order, vectors = self._embedding_parts()
        profiles = np.stack([self.project(q, gene_order) for q in queries])
        from l1000_assets.core.model.network import embed

        z = np.asarray(embed(model, profiles), np.float32)
        return (z @ vectors[cols].T).astype(np.float32)

    def project(self, query: GeneSetQuery, gene_order: Sequence[str]) -> NDArray[np.float32]:
        """The query as a landmark profile in ``gene_order`` (module docstring)."""
        profile = landmark_profile(self.store, query.up_rows, query.down_rows, gene_order)
        if not profile.any():
            raise L1000InputError(
                query.path,
                f"query {query.name!r}: none of its genes is a landmark gene, the only genes "
                "the embedding model reads; use another method",
            )
        return profile

    def _embedding_parts(self):
        if self._embedding is not None:
            return self._embedding
        from l1000_assets.core.embeddings.vectors import (
            model_version,
            read_embeddings,
            recorded_model_version,
        )
        from l1000_assets.core.model.store import CARD_FILE, load_card, load_embedding

        if self._model_dir is None or not (self._model_dir / CARD_FILE).exists():
            raise L1000InputError(
                self._model_dir or self.store.path,
                "the embedding method needs a trained model: materialize embedding_model",
            )
        path = self._signature_embeddings
        if path is None or not path.exists():
            raise L1000InputError(
                path or self.store.path,
                "the embedding method needs signature_embeddings: materialize it",
            )
        version = model_version(self._model_dir / CARD_FILE)
        if recorded_model_version(path) != version:
            raise L1000InputError(
                path,
                f"made by model {recorded_model_version(path)}, the current model is {version}: "
                "materialize profile_embeddings and signature_embeddings again",
            )
        table, vectors = read_embeddings(path, ["sig_id"])
        position = pd.Series(np.arange(table.num_rows), index=table.column("sig_id").to_pylist())
        rows = position.reindex(self.store.index["sig_id"].astype(str)).to_numpy()
        aligned = np.full((len(self.store), vectors.shape[1]), np.nan, np.float32)
        found = ~np.isnan(rows)
        aligned[found] = vectors[rows[found].astype(np.int64)]
        card = load_card(self._model_dir)
        self._embedding = (load_embedding(self._model_dir), card["gene_order"], aligned)
        return self._embedding


def run_files(
    engine: ConnectivityEngine, paths: Sequence[str | Path], options: QueryOptions
) -> tuple[list[QueryResult], list[QueryFailure]]:
    """Read, check and run the queries of ``paths``; refused files and queries are
    returned beside the results."""
    queries, failures = engine.read(paths, options)
    return engine.run(queries, options) if queries else [], failures


def _fdr_rows(p: NDArray[np.floating]) -> NDArray[np.float64]:
    """Benjamini-Hochberg FDR of each row's p-values (NaN left out)."""
    out = np.full(p.shape, np.nan)
    for r in range(len(p)):
        ok = ~np.isnan(p[r])
        if ok.any():
            out[r, ok] = false_discovery_control(p[r, ok])
    return out


def _at(values: dict[str, NDArray], best: NDArray[np.int64]) -> dict[str, NDArray]:
    """The per-signature statistics of the rank test at the best signatures."""
    return {k: values[k][best] for k in ("z_up", "z_down", "fdr_up", "fdr_down") if k in values}


def _sort_key(score: NDArray[np.float64], reversers: bool) -> NDArray[np.float64]:
    """Ascending key: best first in the direction, NaN last."""
    key = score if reversers else -score
    return np.where(np.isnan(key), np.inf, key)


def _best(score: NDArray[np.floating], segments: Segments, reversers: bool) -> NDArray[np.int64]:
    """Per segment, the item (position in ``score``) that scores best in the direction."""
    key = _sort_key(np.asarray(score, np.float64), reversers)
    seg = np.repeat(np.arange(len(segments)), np.diff(segments.offsets))
    items = segments.order
    order = np.lexsort((key[items], seg))
    return items[order][segments.offsets[:-1]]
