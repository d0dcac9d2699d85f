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

**Memory** is bounded whatever the store's width: queries are scored 16 at a time over blocks of
whole perturbagens (the store's columns are sorted by perturbagen, about
:data:`DEFAULT_BLOCK_SIGNATURES` a block), and each query keeps only its running top rows
per level. NCS needs the mean scores of a whole cell line and perturbagen type first, so a
first pass over the blocks sums them; the WTCS of that pass are kept for the second pass up
to ``keep_bytes`` (64 MB: 16 queries over a million signatures) and computed again beyond
it. The rank test's Benjamini-Hochberg FDRs over all signatures come from a histogram of its
statistic (:func:`~l1000_assets.core.connectivity.scoring.rank_test_fdr`), whose size follows
the gene space. What does grow with the store is what was loaded once, as the store's
index: the scopes' column lists and, for the embedding method, the signature embeddings;
and, on request, every row of a level (``keep_ranking``) or every perturbagen (the
ranked-list enrichment).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

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
    mwu_from_sums,
    query_wtcs,
    rank_sums,
    rank_test_distance,
    rank_test_fdr,
    tau_scores,
)
from l1000_assets.core.connectivity.store import Segments, SignatureStore, segments_of
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.evaluation.connectivity import NcsReference, divide_by_group_means

DEFAULT_RESULT_TOP = 20
DEFAULT_BLOCK_SIGNATURES = 8192
"""Signatures scored together (a block ends at a perturbagen's last signature)."""
DEFAULT_KEEP_BYTES = 64 << 20
"""The first pass's WTCS kept for the second, at most (module docstring)."""
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


@dataclass(frozen=True)
class _Scope:
    """The columns a query scores (ascending: whole perturbagens in turn), cut into blocks
    at ``bounds``, and the perturbagens that can rank, with the names hits are listed by."""

    cols: NDArray[np.int64]
    bounds: NDArray[np.int64]
    universe: list[str]
    names: dict[str, str]

    def blocks(self):
        for a, b in zip(self.bounds[:-1], self.bounds[1:]):
            yield self.cols[a:b]


@dataclass
class _SignatureScores:
    """Per-signature scores of a chunk of queries in one block, ``(q, len(cols))`` each."""

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
    block_signatures, keep_bytes
        Signatures per block, and the first pass's WTCS kept at most (module docstring).
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
        block_signatures: int = DEFAULT_BLOCK_SIGNATURES,
        keep_bytes: int = DEFAULT_KEEP_BYTES,
    ):
        from l1000_assets.core.readacross.ranking import read_annotations

        if block_signatures < 1 or keep_bytes < 0:
            raise ValueError("block_signatures must be at least 1 and keep_bytes at least 0")
        self.block_signatures, self.keep_bytes = int(block_signatures), int(keep_bytes)
        self._scopes: dict[tuple[str | None, str | None], _Scope] = {}

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
        """Score, rank and summarize ``queries`` (memory: the module docstring).

        Raises
        ------
        L1000InputError
            For an unknown cell line or perturbagen type (naming the store's index and what
            it has), a scope without signatures, tau without a reference, or the embedding
            method without a model.
        """
        if options.method == "tau" and self.reference is None:
            raise L1000InputError(
                self.store.path,
                f"tau needs the reference: {self._reference_error}; or choose another method",
            )
        scope = self._scope(options)
        out = []
        for q0 in range(0, len(queries), _QUERY_CHUNK):
            chunk = list(queries[q0 : q0 + _QUERY_CHUNK])
            t0 = time.perf_counter()
            tops = self._score_chunk(chunk, scope, options)
            per_query = (time.perf_counter() - t0) / len(chunk)
            for query, levels in zip(chunk, tops):
                t1 = time.perf_counter()
                ranking = levels[options.level]
                enrichment = self._enrichment(levels["perturbagen"], scope, options)
                if not options.keep_ranking:
                    ranking = ranking.head(options.top)
                out.append(
                    QueryResult(
                        query,
                        _public(ranking),
                        enrichment,
                        per_query + time.perf_counter() - t1,
                        options,
                    )
                )
        return out

    def _scope(self, options: QueryOptions) -> _Scope:
        """The columns of the options' cell line and type, cut into blocks of whole
        perturbagens, and the perturbagens that can rank (loaded once per scope)."""
        key = (options.cell, options.pert_type)
        if key not in self._scopes:
            store = self.store
            cols = store.columns(cell=options.cell, pert_type=options.pert_type)
            if not len(cols):
                raise L1000InputError(
                    store.path,
                    f"no signature of cell line {options.cell!r} and perturbagen type "
                    f"{options.pert_type!r} in the store",
                )
            codes = store.pert_codes[cols]
            if np.any(np.diff(codes) < 0):
                raise L1000InputError(
                    store.path, "columns not sorted by perturbagen: rebuild the store"
                )
            starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
            at = np.searchsorted(starts, np.arange(0, len(cols), self.block_signatures))
            cut = np.where(at < len(starts), starts[np.minimum(at, len(starts) - 1)], len(cols))
            bounds = np.unique(np.r_[cut, len(cols)]).astype(np.int64)
            ids = self._meta["pert_id"][cols[starts]].astype(str)
            names = display_names(ids, self._meta["pert_iname"][cols[starts]])
            self._scopes[key] = _Scope(cols, bounds, list(ids), dict(zip(ids, names)))
        return self._scopes[key]

    def _score_chunk(
        self, queries: list[GeneSetQuery], scope: _Scope, options: QueryOptions
    ) -> list[dict[str, pd.DataFrame]]:
        """Each query's ranked rows at its level and per perturbagen (the top ones only,
        unless every row is asked for): two passes over the scope's blocks."""
        store = self.store
        ups = [q.up_rows for q in queries]
        downs = [q.down_rows for q in queries]
        groups = store.group_codes
        blocks = list(scope.blocks())
        # Pass 1: the NCS means of each query per group (cell line and perturbagen type).
        keep = len(queries) * len(scope.cols) * 4 <= self.keep_bytes
        reference = NcsReference(len(queries), int(groups.max()) + 1)
        kept: list[NDArray[np.float32] | None] = []
        for cols in blocks:
            wtcs = query_wtcs(store, ups, downs, cols)[0]
            reference.add(slice(None), wtcs, groups[cols])
            kept.append(wtcs if keep else None)
        means = reference.means()
        embedded = self._embed(queries) if options.method == "embedding" else None
        # Pass 2: scores, summaries and each query's running top rows, block by block.
        reversers = options.direction == "reversers"
        sizes = {options.level: options.top, "perturbagen": options.enrichment_top}
        if options.level == "perturbagen":
            sizes["perturbagen"] = max(options.top, options.enrichment_top)
        if options.keep_ranking:
            sizes = dict.fromkeys(sizes)
        elif options.prerank:
            sizes["perturbagen"] = None
        tops = [{level: _Top(n, reversers) for level, n in sizes.items()} for _ in queries]
        for k, cols in enumerate(blocks):
            wtcs = kept[k] if keep else query_wtcs(store, ups, downs, cols)[0]
            kept[k] = None
            scores = self._block_scores(ups, downs, wtcs, means, cols, options, embedded)
            levels = Levels.of(store, cols)
            pert_sigs = segments_of(store.pert_codes[cols])[1]
            for i, top in enumerate(tops):
                frames = self._frames(scores, i, cols, levels, pert_sigs, options)
                for level, acc in top.items():
                    acc.add(frames[level])
        results = [{level: acc.result() for level, acc in top.items()} for top in tops]
        if options.method == "mwu":
            for i, frames in enumerate(results):
                self._rank_test_fdr(ups[i], downs[i], blocks, frames.values())
        return results

    def _block_scores(
        self,
        ups: list[NDArray[np.int64]],
        downs: list[NDArray[np.int64]],
        wtcs: NDArray[np.float32],
        means: NDArray[np.float64],
        cols: NDArray[np.int64],
        options: QueryOptions,
        embedded: NDArray[np.float32] | None,
    ) -> _SignatureScores:
        store = self.store
        ncs = divide_by_group_means(wtcs, means, store.group_codes[cols]).astype(np.float32)
        tau = (
            tau_scores(ncs, self.reference.quantiles["signature"], cols)
            if self.reference is not None
            else None
        )
        extra: dict[str, NDArray[np.floating]] = {}
        score: NDArray[np.floating]
        if options.method == "mwu":
            z = {}
            for side, sets in (("up", ups), ("down", downs)):
                sums = rank_sums(store, sets, cols)
                sizes = np.array([len(s) for s in sets], np.int64)
                z[side] = mwu_from_sums(sums, sizes, store.n_genes)[0]
                extra[f"_d_{side}"] = np.stack(
                    [rank_test_distance(row, g, store.n_genes) for row, g in zip(sums, sizes)]
                )
            z_up, z_down = z["up"], z["down"]
            score = np.where(
                np.isnan(z_up), -z_down, np.where(np.isnan(z_down), z_up, z_up - z_down)
            )
            extra["z_up"] = z_up
            extra["z_down"] = -z_down  # as SigCom reports it: positive when down genes rank low
        elif options.method == "embedding":
            score = (embedded @ self._embedding_parts()[2][cols].T).astype(np.float32)
            extra = {"similarity": score}
        else:
            score = {"wtcs": wtcs, "ncs": ncs, "tau": tau}[options.method]
        return _SignatureScores(wtcs, ncs, tau, extra, score)

    def _rank_test_fdr(self, up, down, blocks, frames) -> None:
        """The rank test's FDRs of the rows of ``frames`` (at their best signatures), over
        every signature of the scope: one set's histogram at a time."""
        n_genes = self.store.n_genes
        frames = list(frames)
        for side, rows in (("up", up), ("down", down)):
            g = len(rows)
            counts = None
            if g:
                counts = np.zeros(g * (n_genes - g) // 2 + 1, np.int32)
                for cols in blocks:
                    sums = rank_sums(self.store, [rows], cols)[0]
                    seen, n = np.unique(
                        rank_test_distance(sums, g, n_genes) // 2, return_counts=True
                    )
                    counts[seen] += n.astype(np.int32)
            for frame in frames:
                key = f"_d_{side}"
                if key in frame and counts is not None:
                    bins = frame[key].to_numpy(np.int64) // 2
                    frame[f"fdr_{side}"] = rank_test_fdr(counts, g, n_genes, bins)
                else:
                    frame[f"fdr_{side}"] = np.nan

    def _frames(
        self,
        s: _SignatureScores,
        i: int,
        cols: NDArray[np.int64],
        levels: Levels,
        pert_sigs: Segments,
        options: QueryOptions,
    ) -> dict[str, pd.DataFrame]:
        """Query ``i``'s rows of one block at its level, and per perturbagen (for the
        statistics), unsorted."""
        reversers = options.direction == "reversers"
        sig = {"wtcs": s.wtcs[i], "ncs": s.ncs[i], "score": s.score[i]}
        if s.tau is not None:
            sig["tau"] = s.tau[i]
        sig.update({name: values[i] for name, values in s.extra.items()})
        frames = {}
        if options.level == "signature":
            ones = np.ones(len(cols), np.int64)
            frames["signature"] = self._frame(cols, sig, ones, ones, cols)
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
            cols[best],
            {**_at(sig, best), **cell},
            cell_sizes,
            np.ones_like(cell_sizes),
            levels.pert_cells,
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
            levels.perts,
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
        keys: NDArray[np.integer],
    ) -> pd.DataFrame:
        """A level's rows, their metadata from the (best) signature of each, ``sig_cols``;
        ``keys`` (the rows' store codes) break the last ties when they are ranked, and
        columns named ``_...`` are the engine's own."""
        return pd.DataFrame(
            {
                **{c: pd.Series(v[sig_cols], dtype=object) for c, v in self._meta.items()},
                "n_cell_lines": np.asarray(n_cell_lines, np.int64),
                "n_signatures": np.asarray(n_signatures, np.int64),
                **{k: v for k, v in values.items() if k in RANKING_COLUMNS or k[0] == "_"},
                "_key": np.asarray(keys, np.int64),
            }
        )

    def _enrichment(
        self, perts: pd.DataFrame, scope: _Scope, options: QueryOptions
    ) -> pd.DataFrame:
        """Top-N MOA/target enrichment among the perturbagen-level hits, against every
        perturbagen of the scope (and, on request, the ranked-list test over all of them)."""
        names = [scope.names[p] for p in perts["pert_id"].astype(str)]
        tables = [
            top_enrichment(
                perts["pert_id"].tolist(),
                names,
                self.annotations,
                top=options.enrichment_top,
                terms=self._terms,
                background=scope.universe,
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
                    [scope.names[p] for p in ranked["pert_id"].astype(str)],
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
    def _embed(self, queries: list[GeneSetQuery]) -> NDArray[np.float32]:
        """The queries' embeddings ``(q, d)``, by the served model."""
        model, gene_order, _ = self._embedding_parts()
        profiles = np.stack([self.project(q, gene_order) for q in queries])
        from l1000_assets.core.model.network import embed

        return np.asarray(embed(model, profiles), np.float32)

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


def _at(values: dict[str, NDArray], best: NDArray[np.int64]) -> dict[str, NDArray]:
    """The per-signature statistics of the rank test at the best signatures."""
    return {k: values[k][best] for k in ("z_up", "z_down", "_d_up", "_d_down") if k in values}


def _public(frame: pd.DataFrame) -> pd.DataFrame:
    """A ranking's columns as results show them (the engine's own ``_...`` left out)."""
    return frame[[c for c in RANKING_COLUMNS if c in frame.columns]].reset_index(drop=True)


class _Top:
    """A query's best ``n`` rows of one level so far (all of them when ``n`` is None),
    merged block by block."""

    def __init__(self, n: int | None, reversers: bool):
        self.n, self.reversers = n, reversers
        self._parts: list[pd.DataFrame] = []

    def add(self, frame: pd.DataFrame) -> None:
        if self.n is not None:
            frame = _ranked(frame, self.reversers).head(self.n)
        self._parts.append(frame)
        if self.n is not None and len(self._parts) >= 8:
            self._parts = [self._merged()]

    def _merged(self) -> pd.DataFrame:
        parts = [p for p in self._parts if len(p)] or self._parts[:1]
        frame = _ranked(pd.concat(parts, ignore_index=True), self.reversers)
        return frame if self.n is None else frame.head(self.n)

    def result(self) -> pd.DataFrame:
        """The rows ranked best first in the direction, with their ``rank``."""
        frame = self._merged().reset_index(drop=True)
        frame.insert(0, "rank", np.arange(1, len(frame) + 1, dtype=np.int64))
        return frame


def _ranked(frame: pd.DataFrame, reversers: bool) -> pd.DataFrame:
    """``frame`` best first in the direction: by score, ties (tau saturates at +/-100)
    broken by NCS, then WTCS, then the rows' store codes (``_key``)."""
    keys = [_sort_key(frame[c].to_numpy(float), reversers) for c in ("wtcs", "ncs", "score")]
    order = np.lexsort((frame["_key"].to_numpy(), *keys))
    return frame.iloc[order].reset_index(drop=True)


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
