"""Ranking query profiles against the perturbagen embeddings, and the read-across engine
(:class:`ReadAcross`: the current model, gene index and references, loaded once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from l1000_assets.core.embeddings.vectors import read_embeddings, recorded_model_version
from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.progress import Progress
from l1000_assets.core.readacross.genes import GeneIndex, read_genes
from l1000_assets.core.readacross.query_files import (
    QueryOptions,
    QueryProfiles,
    read_query_file,
)

DEFAULT_TOP = 20
MISSING_ANNOTATION = ("", "-666", "NA", "nan", "None")
RESULT_COLUMNS = [
    "query_file",
    "query_path",
    "query_id",
    "rank",
    "pert_id",
    "pert_iname",
    "pert_type",
    "cell_id",
    "similarity",
    "moa",
    "target",
    "model_version",
]


def _clean(value: object) -> str | None:
    if value is None or pd.isna(value):
        return None
    text = str(value).strip()
    return None if text in MISSING_ANNOTATION else text


def read_annotations(paths: Sequence[str | Path]) -> pd.DataFrame:
    """MOA and target per ``pert_id`` from the lake's ``perturbagens`` tables (the first
    known value over the releases; ``-666`` and blanks are unknown)."""
    frames = [pq.read_table(p, columns=["pert_id", "moa", "target"]).to_pandas() for p in paths]
    if not frames:
        return pd.DataFrame({"pert_id": [], "moa": [], "target": []}, dtype=object)
    df = pd.concat(frames, ignore_index=True).astype(object)
    for c in ("moa", "target"):
        df[c] = [_clean(v) for v in df[c]]
    return df.groupby("pert_id", sort=False).agg({"moa": "first", "target": "first"}).reset_index()


@dataclass(frozen=True)
class References:
    """Perturbagen embeddings of one scope (all cell lines, or one), with annotations."""

    pert_id: np.ndarray
    pert_iname: np.ndarray
    pert_type: np.ndarray
    moa: np.ndarray
    target: np.ndarray
    cell_id: str | None
    vectors: np.ndarray  # (n, d) float32, unit rows
    model_version: str

    def __len__(self) -> int:
        return len(self.pert_id)


def load_references(
    path: str | Path,
    annotations: pd.DataFrame,
    *,
    cell: str | None = None,
    pert_type: str | None = None,
) -> References:
    """Perturbagen embeddings of ``cell`` (None: over all cell lines), optionally of one
    ``pert_type``, from the ``perturbagen_embeddings`` Parquet file."""
    path = Path(path)
    if not path.exists():
        raise L1000InputError(
            path, "perturbagen embeddings not found: materialize perturbagen_embeddings first"
        )
    table, vectors = read_embeddings(path, ["pert_id", "pert_iname", "pert_type", "cell_id"])
    mask = pc.is_null(table["cell_id"]) if cell is None else pc.equal(table["cell_id"], cell)
    if pert_type is not None:
        mask = pc.and_(mask, pc.equal(table["pert_type"], pert_type))
    mask = pc.fill_null(mask, False).to_numpy(zero_copy_only=False)
    if not mask.any():
        what = f"cell line {cell!r}" if cell else "all cell lines"
        kind = f" of type {pert_type!r}" if pert_type else ""
        raise L1000InputError(path, f"no perturbagen embeddings for {what}{kind}")
    meta = table.filter(pa.array(mask)).to_pandas()
    ann = meta[["pert_id"]].merge(annotations, on="pert_id", how="left")

    def objects(column: pd.Series) -> np.ndarray:  # missing -> None, not NaN
        return np.array([_clean(v) for v in column], dtype=object)

    return References(
        meta["pert_id"].to_numpy(object),
        objects(meta["pert_iname"]),
        objects(meta["pert_type"]),
        objects(ann["moa"]),
        objects(ann["target"]),
        cell,
        vectors[mask],
        recorded_model_version(path),
    )


def top_k(
    queries: np.ndarray, references: np.ndarray, k: int, block: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and inner products of the ``k`` most similar references of each query,
    best first. Memory: ``block x n`` similarities at a time; no full sort."""
    q = np.asarray(queries, np.float32)
    r = np.asarray(references, np.float32)
    k = min(int(k), len(r))
    idx = np.zeros((len(q), k), np.int64)
    sims = np.zeros((len(q), k), np.float32)
    for b0 in range(0, len(q), block):
        s = q[b0 : b0 + block] @ r.T
        part = (
            np.argpartition(-s, k - 1, axis=1)[:, :k]
            if k < len(r)
            else np.tile(np.arange(len(r)), (len(s), 1))
        )
        top = np.take_along_axis(s, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        idx[b0 : b0 + block] = np.take_along_axis(part, order, axis=1)
        sims[b0 : b0 + block] = np.take_along_axis(top, order, axis=1)
    return idx, sims


def rank(query: QueryProfiles, embeddings: np.ndarray, refs: References, k: int) -> pd.DataFrame:
    """The top ``k`` perturbagens of each query profile (``RESULT_COLUMNS``)."""
    idx, sims = top_k(embeddings, refs.vectors, k)
    n, kk = idx.shape
    flat = idx.reshape(-1)
    return pd.DataFrame(
        {
            "query_file": query.path.name,
            "query_path": str(query.path.resolve()),
            "query_id": np.repeat(np.asarray(query.profile_ids, object), kk),
            "rank": np.tile(np.arange(1, kk + 1), n).astype(np.int64),
            "pert_id": refs.pert_id[flat],
            "pert_iname": refs.pert_iname[flat],
            "pert_type": refs.pert_type[flat],
            "cell_id": refs.cell_id,
            "similarity": sims.reshape(-1).astype(np.float64),
            "moa": refs.moa[flat],
            "target": refs.target[flat],
            "model_version": refs.model_version,
        },
        columns=RESULT_COLUMNS,
    )


class EmbeddingNetwork(Protocol):
    """What ranking needs of the embedding network."""

    n_genes: int
    embedding_dim: int

    def embed(self, values: np.ndarray) -> np.ndarray: ...


class _KerasEmbedding:
    """The ``.keras`` model behind :class:`EmbeddingNetwork` (imports TensorFlow)."""

    def __init__(self, model_dir: Path):
        from l1000_assets.core.model.store import load_embedding

        self.model = load_embedding(model_dir)
        self.n_genes = int(self.model.input_shape[-1])
        self.embedding_dim = int(self.model.output_shape[-1])

    def embed(self, values: np.ndarray) -> np.ndarray:
        from l1000_assets.core.model.network import embed

        return embed(self.model, values)


# --------------------------------------------------------------------------------------
# The whole read-across: model, genes, references
# --------------------------------------------------------------------------------------
@dataclass
class ReadAcrossResult:
    query: QueryProfiles
    embeddings: np.ndarray  # (n, d)
    hits: pd.DataFrame  # RESULT_COLUMNS


class ReadAcross:
    """The current model, gene index and reference perturbagens, loaded once.

    The network is loaded only when the first profiles are embedded, so a query file is
    read and checked first: a bad file is refused without it (:meth:`read`, then
    :meth:`rank_query`; :meth:`run` does both). It runs in numpy from the weights exported
    beside the model (milliseconds to load); a model directory without them is run through
    Keras (TensorFlow: seconds and about a GB to load; ``l1000 export-weights`` exports them).

    Parameters
    ----------
    model_dir
        The ``embedding_model`` directory (``embedding.keras`` + ``card.json``).
    genes_paths, perturbagens_paths
        The lake's ``genes`` and ``perturbagens`` tables.
    perturbagen_embeddings
        The ``perturbagen_embeddings`` Parquet file, made by this model.
    """

    def __init__(
        self,
        model_dir: str | Path,
        genes_paths: Sequence[str | Path],
        perturbagens_paths: Sequence[str | Path],
        perturbagen_embeddings: str | Path,
        *,
        cell: str | None = None,
        pert_type: str | None = None,
    ):
        from l1000_assets.core.embeddings.vectors import model_version
        from l1000_assets.core.model.store import CARD_FILE, load_card

        self.model_dir = Path(model_dir)
        self.perturbagen_embeddings = Path(perturbagen_embeddings)
        card_path = self.model_dir / CARD_FILE
        if not card_path.exists():
            raise L1000InputError(
                self.model_dir, "no trained model: materialize embedding_model first"
            )
        self.card = load_card(self.model_dir)
        self.version = model_version(card_path)
        self.genes = GeneIndex.from_genes(
            read_genes(genes_paths), self.card.get("gene_order", []), card_path
        )
        self.references = load_references(
            perturbagen_embeddings,
            read_annotations(perturbagens_paths),
            cell=cell,
            pert_type=pert_type,
        )
        if self.references.model_version != self.version:
            raise L1000InputError(
                perturbagen_embeddings,
                f"made by model {self.references.model_version}, but the "
                f"current model is {self.version}: materialize "
                "profile_embeddings and perturbagen_embeddings again",
            )
        self._network: EmbeddingNetwork | None = None
        self._stats = None

    @property
    def network(self) -> EmbeddingNetwork:
        """The embedding network, loaded (and checked against the card and the references)
        on first use: the weights exported beside the model, run in numpy (no TensorFlow:
        :mod:`l1000_assets.core.model.forward`), or the Keras model when the directory has
        no current export (:attr:`forward` says which)."""
        if self._network is None:
            from l1000_assets.core.model.forward import load_weights

            network = load_weights(self.model_dir)
            if network is None:
                network = _KerasEmbedding(self.model_dir)
            if network.n_genes != len(self.genes.gene_order):
                raise L1000InputError(
                    self.model_dir,
                    f"model/gene-order mismatch: the model takes "
                    f"{network.n_genes} inputs, its card lists "
                    f"{len(self.genes.gene_order)} genes",
                )
            if network.embedding_dim != self.references.vectors.shape[1]:
                raise L1000InputError(
                    self.perturbagen_embeddings,
                    f"{self.references.vectors.shape[1]}-d embeddings, the model makes "
                    f"{network.embedding_dim}-d ones",
                )
            self._network = network
        return self._network

    @property
    def forward(self) -> str:
        """``numpy`` (the exported weights) or ``keras``: how profiles are embedded."""
        return "keras" if isinstance(self.network, _KerasEmbedding) else "numpy"

    def embed(
        self, values: np.ndarray, *, batch_size: int = 4096, progress: Progress | None = None
    ) -> np.ndarray:
        out = np.zeros((len(values), self.network.embedding_dim), np.float32)
        t0 = time.perf_counter()
        for b0 in range(0, len(values), batch_size):
            out[b0 : b0 + batch_size] = self.network.embed(values[b0 : b0 + batch_size])
            if progress:
                progress(min(b0 + batch_size, len(values)), len(values), time.perf_counter() - t0)
        return out

    @property
    def landmark_stats(self):
        """The model's landmark statistics (imputation, quantile mapping), or None for a
        model saved before they were stored with it."""
        from l1000_assets.core.readacross.platforms.landmark_stats import (
            STATS_FILE,
            LandmarkStats,
        )

        if self._stats is None and (self.model_dir / STATS_FILE).is_file():
            self._stats = LandmarkStats.load(self.model_dir / STATS_FILE)
        return self._stats

    def read(
        self,
        path: str | Path,
        options: QueryOptions = QueryOptions(),
        *,
        progress: Progress | None = None,
        platform: str = "zscores",
        samples: str | Path | None = None,
        gene_map: str | Path | None = None,
        platform_options=None,
    ) -> QueryProfiles:
        """Read and check one query file; needs no model. ``platform`` ``zscores``:
        :func:`read_query_file` (missing landmarks imputed when ``options.impute``); other
        platforms: :func:`~l1000_assets.core.readacross.platforms.inputs.read_platform_query`
        with the sample sheet ``samples``, the identifier mapping ``gene_map`` and
        ``platform_options``."""
        from l1000_assets.core.readacross.platforms.inputs import (
            PlatformOptions,
            read_platform_query,
        )

        if platform == "zscores":
            query = read_query_file(path, self.genes, options, progress=progress)
            if options.impute and query.missing:
                stats = self.landmark_stats
                if stats is None:
                    query.warnings.append(
                        "the model has no landmark statistics: missing landmarks set to 0"
                    )
                else:
                    missing = {self.genes.position[g] for g in query.missing}
                    measured = np.array([i not in missing for i in range(N_LANDMARKS)])
                    query.values = stats.impute(query.values, measured).astype(np.float32)
                    query.imputed = list(query.missing)
                    query.transform += (
                        f"; {len(query.missing)} landmark(s) imputed (ridge on the measured ones)"
                    )
            return query
        from l1000_assets.core.readacross.platforms.identifiers import read_gene_map

        return read_platform_query(
            path,
            platform,
            self.genes,
            samples=samples,
            gene_map=read_gene_map(gene_map) if gene_map is not None else None,
            stats=self.landmark_stats,
            options=platform_options or PlatformOptions(),
        )

    def rank_query(
        self, query: QueryProfiles, *, top: int = DEFAULT_TOP, progress: Progress | None = None
    ) -> ReadAcrossResult:
        """Embed and rank the profiles of a query file read by :meth:`read`; profiles whose
        embedding is not unit length are refused (:func:`check_unit_length`)."""
        z = self.embed(query.values, progress=progress)
        check_unit_length(query.path, z, query.profile_ids)
        return ReadAcrossResult(query, z, rank(query, z, self.references, top))

    def run(
        self,
        path: str | Path,
        *,
        top: int = DEFAULT_TOP,
        options: QueryOptions = QueryOptions(),
        progress: Callable[[str], Progress | None] | None = None,
        **read_options,
    ) -> ReadAcrossResult:
        """Read, check, embed and rank one query file (``read_options``: ``platform``,
        ``samples``, ``gene_map``, ``platform_options`` of :meth:`read`).
        ``progress(stage)`` may return a progress callback for the stages ``"read"`` (GCTX
        blocks) and ``"embedded"``."""
        stage = progress or (lambda _: None)
        query = self.read(path, options, progress=stage("read"), **read_options)
        return self.rank_query(query, top=top, progress=stage("embedded"))


def check_unit_length(
    path: str | Path, embeddings: np.ndarray, profile_ids: Sequence[str], tol: float = 1e-3
) -> None:
    """Refuse profiles whose embedding is not a unit vector (zero or non-finite: degenerate
    input the model cannot place), naming them; their hits would be arbitrary."""
    norms = np.linalg.norm(np.asarray(embeddings, np.float64), axis=1)
    bad = ~np.isfinite(norms) | (np.abs(norms - 1) > tol)
    if bad.any():
        ids = np.asarray(profile_ids, object)[bad]
        raise L1000InputError(
            path,
            f"{bad.sum()} profile(s) embed to a vector that is not unit length (norm "
            f"{norms[bad][0]:.3g}): degenerate values the model cannot place, not ranked: "
            f"{preview_ids(ids)}",
        )
