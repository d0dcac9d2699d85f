"""Read-across with a user's own profiles: parse, map genes, validate, embed, rank.

Inputs are **level-4-like landmark z-scores**: each value says how far a gene's expression
in the profile lies from its plate (or experiment) population, in robust standard
deviations (median 0, MAD-based scale). Raw counts, log expression or fold changes are
not z-scores; profiles that look like them get a warning.

Accepted files (one or many profiles each):

* ``.gct`` (GCT 1.2/1.3) and ``.gctx`` (HDF5): rows are genes, columns are profiles.
* ``.csv`` / ``.tsv`` / ``.txt`` (tab): the first column holds genes, every other column is
  one profile (header = profile id); or transposed (first column = profile ids, header =
  genes), detected from which axis holds the gene identifiers.

Genes are Entrez ids (``5720``) or symbols (``PSME1``, case-insensitive), mapped to the
978 landmark genes in the model's input order (``gene_order`` of the model card) through
the lake's ``genes`` table. Known non-landmark genes are ignored; landmark genes missing
from the file are set to 0 (no change) and reported, and a file missing more than
``max_missing`` of them is refused. Unknown identifiers, duplicate genes, non-numeric or
non-finite values and empty files are refused with :class:`L1000InputError` naming the
file and a few offending ids.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from l1000_assets.core.embeddings import read_embeddings, recorded_model_version
from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.ingest import N_LANDMARKS

QUERY_SUFFIXES = (".gct", ".gctx", ".csv", ".tsv", ".txt")
DEFAULT_MAX_MISSING = 50          # of 978 landmark genes (about 5%)
DEFAULT_TOP = 20
MISSING_ANNOTATION = ("", "-666", "NA", "nan", "None")
RESULT_COLUMNS = ["query_file", "query_path", "query_id", "rank", "pert_id", "pert_iname",
                  "pert_type", "cell_id", "similarity", "moa", "target", "model_version"]

Log = Callable[[str], None]
Progress = Callable[[int, int, float], None]


# --------------------------------------------------------------------------------------
# Genes
# --------------------------------------------------------------------------------------
def _normalize_gene_label(label: object) -> str:
    text = str(label).strip()
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]            # Entrez ids written as floats by a spreadsheet
    return text


@dataclass(frozen=True)
class GeneIndex:
    """Maps gene identifiers (Entrez id or symbol) to positions in the model input."""

    gene_order: tuple[str, ...]                  # the model's 978 landmark ids, in order
    position: dict[str, int]                     # landmark gene id -> input position
    known_ids: frozenset[str]                    # every gene id of the genes table
    symbols: dict[str, str]                      # upper-case symbol -> gene id
    landmark_symbols: dict[str, str]             # landmark gene id -> symbol

    @classmethod
    def from_genes(cls, genes: pd.DataFrame, gene_order: Sequence[str],
                   source: str | Path = "model card") -> "GeneIndex":
        """From the lake's ``genes`` table(s) and the model's ``gene_order``.

        Raises :class:`L1000InputError` (naming ``source``) when the model's gene order is
        not the 978 landmark genes of the genes table: a model/gene-order mismatch.
        """
        order = [str(g) for g in gene_order]
        if len(order) != N_LANDMARKS or len(set(order)) != N_LANDMARKS:
            raise L1000InputError(source, f"gene_order has {len(order)} entries "
                                          f"({len(set(order))} distinct), expected "
                                          f"{N_LANDMARKS} landmark genes")
        ids = genes["gene_id"].astype(str)
        landmarks = set(ids[genes["is_landmark"].fillna(False).astype(bool)])
        if set(order) != landmarks:
            off = sorted(set(order) ^ landmarks)
            raise L1000InputError(source, "model/gene-order mismatch: the model's gene_order "
                                          "is not the lake's set of landmark genes "
                                          f"({len(off)} differ: {preview_ids(off)})")
        symbols: dict[str, str] = {}
        landmark_symbols: dict[str, str] = {}
        for gid, sym, is_lm in zip(ids, genes["symbol"], genes["is_landmark"].fillna(False)):
            if sym is None or pd.isna(sym):
                continue
            key = str(sym).strip().upper()
            # A symbol shared by a landmark and another gene resolves to the landmark.
            if key not in symbols or bool(is_lm):
                symbols[key] = gid
            if bool(is_lm):
                landmark_symbols[gid] = str(sym)
        return cls(tuple(order), {g: i for i, g in enumerate(order)},
                   frozenset(ids), symbols, landmark_symbols)

    def resolve(self, label: object) -> str | None:
        """The gene id of an Entrez id or symbol, or None if the genes table lacks it."""
        text = _normalize_gene_label(label)
        if text in self.known_ids:
            return text
        return self.symbols.get(text.upper())

    def matches(self, labels: Iterable[object]) -> int:
        return sum(self.resolve(x) is not None for x in labels)

    def describe(self, gene_id: str) -> str:
        sym = self.landmark_symbols.get(gene_id)
        return f"{gene_id} ({sym})" if sym else gene_id


def read_genes(paths: Sequence[str | Path]) -> pd.DataFrame:
    """The lake's ``genes`` tables (every release), one row per gene id."""
    if not paths:
        raise L1000InputError("genes.parquet", "no genes table in the lake: materialize "
                                               "release_metadata first")
    frames = [pq.read_table(p, columns=["gene_id", "symbol", "is_landmark"]).to_pandas()
              for p in paths]
    genes = pd.concat(frames, ignore_index=True)
    genes["gene_id"] = genes["gene_id"].astype(str)
    genes = genes.sort_values("is_landmark", ascending=False, kind="stable")
    return genes.drop_duplicates("gene_id").reset_index(drop=True)


# --------------------------------------------------------------------------------------
# Query files
# --------------------------------------------------------------------------------------
@dataclass
class QueryProfiles:
    """Profiles of one query file, mapped to the model input."""

    path: Path
    profile_ids: list[str]
    values: np.ndarray                          # (n, 978) float32 in gene_order
    n_genes_in_file: int
    missing: list[str]                          # landmark gene ids absent (set to 0)
    ignored: int                                # known non-landmark genes skipped
    unknown: list[str] = field(default_factory=list)   # skipped when allowed
    warnings: list[str] = field(default_factory=list)

    @property
    def n_landmarks_used(self) -> int:
        return N_LANDMARKS - len(self.missing)


@dataclass(frozen=True)
class QueryOptions:
    max_missing: int = DEFAULT_MAX_MISSING
    allow_unknown: bool = False     # skip unknown gene identifiers instead of refusing


def is_query_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in QUERY_SUFFIXES and \
        not path.name.startswith(".")


def read_query_file(path: str | Path, genes: GeneIndex, options: QueryOptions = QueryOptions(),
                    *, progress: Progress | None = None) -> QueryProfiles:
    """Parse, map and validate one query file (see the module docstring).

    Raises
    ------
    L1000InputError
        Naming the file and the problem: unsupported type, empty file, unknown gene
        identifiers, duplicate genes, too many landmark genes missing, non-numeric or
        non-finite values, duplicate profile ids.
    """
    path = Path(path)
    if not path.is_file():
        raise L1000InputError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix not in QUERY_SUFFIXES:
        raise L1000InputError(path, f"unsupported file type {suffix or '(none)'!r}: expected "
                                    f"{', '.join(QUERY_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise L1000InputError(path, "empty file")
    if suffix == ".gctx":
        return _read_gctx(path, genes, options, progress)
    if suffix == ".gct":
        from l1000_assets.core.gct import read_gct

        gct = read_gct(path)
        return _assemble(path, gct.row_ids.tolist(), [str(c) for c in gct.col_ids],
                         lambda rows: gct.values[:, rows], genes, options)
    return _read_table(path, genes, options)


def _map_genes(path: Path, labels: Sequence[object], genes: GeneIndex, options: QueryOptions):
    """(file rows, input positions) of the landmark genes; missing ids, ignored count,
    unknown labels. Raises on unknown labels (unless allowed), duplicates, too many
    missing."""
    if not labels:
        raise L1000InputError(path, "no genes in the file")
    rows, positions, unknown = [], [], []
    seen: dict[int, list[str]] = {}
    ignored = 0
    for row, label in enumerate(labels):
        gid = genes.resolve(label)
        if gid is None:
            unknown.append(str(label))
            continue
        pos = genes.position.get(gid)
        if pos is None:
            ignored += 1
            continue
        seen.setdefault(pos, []).append(str(label))
        rows.append(row)
        positions.append(pos)
    if unknown and not options.allow_unknown:
        raise L1000InputError(path, f"{len(unknown)} unknown gene identifier(s), neither an "
                                    "Entrez gene id nor a symbol of the genes table: "
                                    f"{preview_ids(unknown)} (allow them to skip these rows)")
    duplicates = {pos: names for pos, names in seen.items() if len(names) > 1}
    if duplicates:
        shown = [f"{genes.describe(genes.gene_order[p])} as {' and '.join(map(repr, n))}"
                 for p, n in list(duplicates.items())[:5]]
        raise L1000InputError(path, f"{len(duplicates)} landmark gene(s) given more than once: "
                                    + "; ".join(shown))
    missing = [g for i, g in enumerate(genes.gene_order) if i not in seen]
    if len(missing) > options.max_missing:
        shown = preview_ids(genes.describe(g) for g in missing)
        raise L1000InputError(
            path, f"{len(missing)} of {N_LANDMARKS} landmark genes missing, more than the "
                  f"{options.max_missing} allowed: {shown}"
                  f"{' (no gene identifier matched the genes table)' if not rows else ''}")
    return np.asarray(rows, np.int64), np.asarray(positions, np.int64), missing, ignored, unknown


def _assemble(path: Path, gene_labels: Sequence[object], profile_ids: list[str],
              take: Callable[[np.ndarray], np.ndarray], genes: GeneIndex,
              options: QueryOptions) -> QueryProfiles:
    if not profile_ids:
        raise L1000InputError(path, "no profiles in the file (only gene identifiers)")
    _check_unique(path, profile_ids)
    rows, positions, missing, ignored, unknown = _map_genes(path, gene_labels, genes, options)
    values = np.zeros((len(profile_ids), N_LANDMARKS), np.float32)
    values[:, positions] = take(rows)
    _check_finite(path, values, profile_ids)
    return QueryProfiles(path, profile_ids, values, len(gene_labels), missing, ignored, unknown,
                         scale_warnings(values, profile_ids))


def _check_unique(path: Path, profile_ids: Sequence[str]) -> None:
    ids = pd.Series(profile_ids)
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise L1000InputError(path, f"duplicate profile id(s): {preview_ids(dup)}")


def _check_finite(path: Path, values: np.ndarray, profile_ids: Sequence[str]) -> None:
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise L1000InputError(path, "non-finite values (NaN, inf or empty) in profile(s) "
                                    f"{preview_ids(np.asarray(profile_ids, object)[bad])}")


def _read_table(path: Path, genes: GeneIndex, options: QueryOptions) -> QueryProfiles:
    """CSV/TSV: numbers parsed by pandas' C parser (float32); a file with any cell that is
    not a number is read again as text, to name the offending cells."""
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    kind = "CSV" if sep == "," else "TSV"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            # Read the header ourselves: pandas would rename duplicate profile ids.
            header = next(csv.reader(f, delimiter=sep), None)
        if not header:
            raise L1000InputError(path, "empty file")
        if len(header) < 2:
            separator = "commas" if sep == "," else "tabs"
            raise L1000InputError(path, "one column only: expected a gene column and one "
                                        f"column per profile, separated by {separator}")
        body = pd.read_csv(path, sep=sep, header=None, skiprows=1, index_col=0,
                           dtype={0: str}, keep_default_na=False,
                           na_values=["", "NA", "NaN", "nan", "-nan", "N/A"])
    except pd.errors.EmptyDataError as exc:
        raise L1000InputError(path, "empty file (a header and no data)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as exc:
        raise L1000InputError(path, f"cannot parse as {kind}: {str(exc).strip()}") from exc
    if body.shape[0] == 0:
        raise L1000InputError(path, "empty file (a header and no data)")
    if body.shape[1] != len(header) - 1:
        raise L1000InputError(path, f"{len(header)} header fields but {body.shape[1] + 1} "
                                    "fields in the data rows")
    if all(pd.api.types.is_numeric_dtype(t) for t in body.dtypes):
        values = body.to_numpy(np.float32)
    else:
        text = pd.read_csv(path, sep=sep, header=None, skiprows=1, index_col=0, dtype=str,
                           keep_default_na=False).to_numpy()
        values = _parse_numbers(path, text, [str(x) for x in body.index], header[1:])
    first = [str(x) for x in body.index]
    header = header[1:]
    if genes.matches(header) > genes.matches(first):       # profiles as rows, genes as columns
        labels, profile_ids = header, first
    else:
        labels, profile_ids, values = first, header, values.T
    return _assemble(path, labels, profile_ids, lambda rows: values[:, rows], genes, options)


def _parse_numbers(path: Path, text: np.ndarray, row_ids: Sequence[str],
                   column_ids: Sequence[object]) -> np.ndarray:
    """``text`` (a table of str, as in the file) as float32; non-numeric cells are an
    error naming the cell's row and column."""
    flat = pd.Series(text.reshape(-1)).str.strip()
    numbers = pd.to_numeric(flat, errors="coerce")
    bad = numbers.isna() & (flat != "") & ~flat.str.lower().isin(["nan", "na", "-nan"])
    if bad.any():
        idx = np.flatnonzero(bad.to_numpy())
        shown = [f"{flat.iloc[i]!r} (row {row_ids[i // text.shape[1]]!r}, "
                 f"column {str(column_ids[i % text.shape[1]])!r})" for i in idx[:3]]
        more = f" and {len(idx) - 3} more" if len(idx) > 3 else ""
        raise L1000InputError(path, f"{len(idx)} non-numeric value(s): {', '.join(shown)}{more}")
    return numbers.to_numpy(np.float64).astype(np.float32).reshape(text.shape)


def _read_gctx(path: Path, genes: GeneIndex, options: QueryOptions,
               progress: Progress | None) -> QueryProfiles:
    from l1000_assets.core.gctx import GctxReader

    with GctxReader(path) as reader:
        labels = reader.row_ids.tolist()
        profile_ids = [str(c) for c in reader.col_ids]
        if not profile_ids:
            raise L1000InputError(path, "no profiles in the file")
        _check_unique(path, profile_ids)
        rows, positions, missing, ignored, unknown = _map_genes(path, labels, genes, options)
        values = np.zeros((len(profile_ids), N_LANDMARKS), np.float32)
        t0 = time.perf_counter()
        if len(rows):
            order = np.argsort(rows)   # read the rows in file order, place them by position
            for block in reader.iter_blocks(rows[order], check_finite=False):
                values[block.start:block.stop, positions[order]] = block.values
                if progress:
                    progress(block.stop, len(profile_ids), time.perf_counter() - t0)
    _check_finite(path, values, profile_ids)
    return QueryProfiles(path, profile_ids, values, len(labels), missing, ignored, unknown,
                         scale_warnings(values, profile_ids))


def scale_warnings(values: np.ndarray, profile_ids: Sequence[str]) -> list[str]:
    """Warnings for profiles that do not look like level-4 z-scores."""
    out = []
    nonneg = (values >= 0).all(axis=1)
    center = np.abs(np.median(values, axis=1))
    spread = values.std(axis=1)
    ids = np.asarray(profile_ids, object)
    if nonneg.any():
        out.append(f"{nonneg.sum()} profile(s) have no negative value, like raw or log "
                   f"expression rather than z-scores: {preview_ids(ids[nonneg])}")
    far = ~nonneg & ((center > 2) | (spread > 10))
    if far.any():
        out.append(f"{far.sum()} profile(s) are far from level-4 z-scores (|median| > 2 or "
                   f"SD > 10): {preview_ids(ids[far])}")
    flat = spread == 0
    if flat.any():
        out.append(f"{flat.sum()} profile(s) are constant: {preview_ids(ids[flat])}")
    return out


# --------------------------------------------------------------------------------------
# Reference perturbagens and ranking
# --------------------------------------------------------------------------------------
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
    return df.groupby("pert_id", sort=False).agg(
        {"moa": "first", "target": "first"}).reset_index()


@dataclass(frozen=True)
class References:
    """Perturbagen embeddings of one scope (all cell lines, or one), with annotations."""

    pert_id: np.ndarray
    pert_iname: np.ndarray
    pert_type: np.ndarray
    moa: np.ndarray
    target: np.ndarray
    cell_id: str | None
    vectors: np.ndarray              # (n, d) float32, unit rows
    model_version: str

    def __len__(self) -> int:
        return len(self.pert_id)


def load_references(path: str | Path, annotations: pd.DataFrame, *, cell: str | None = None,
                    pert_type: str | None = None) -> References:
    """Perturbagen embeddings of ``cell`` (None: over all cell lines), optionally of one
    ``pert_type``, from the ``perturbagen_embeddings`` Parquet file."""
    path = Path(path)
    if not path.exists():
        raise L1000InputError(path, "perturbagen embeddings not found: materialize "
                                    "perturbagen_embeddings first")
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

    def objects(column: pd.Series) -> np.ndarray:     # missing -> None, not NaN
        return np.array([_clean(v) for v in column], dtype=object)

    return References(meta["pert_id"].to_numpy(object), objects(meta["pert_iname"]),
                      objects(meta["pert_type"]), objects(ann["moa"]), objects(ann["target"]),
                      cell, vectors[mask], recorded_model_version(path))


def top_k(queries: np.ndarray, references: np.ndarray, k: int,
          block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Indices and inner products of the ``k`` most similar references of each query,
    best first. Memory: ``block x n`` similarities at a time; no full sort."""
    q = np.asarray(queries, np.float32)
    r = np.asarray(references, np.float32)
    k = min(int(k), len(r))
    idx = np.zeros((len(q), k), np.int64)
    sims = np.zeros((len(q), k), np.float32)
    for b0 in range(0, len(q), block):
        s = q[b0:b0 + block] @ r.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < len(r) else \
            np.tile(np.arange(len(r)), (len(s), 1))
        top = np.take_along_axis(s, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        idx[b0:b0 + block] = np.take_along_axis(part, order, axis=1)
        sims[b0:b0 + block] = np.take_along_axis(top, order, axis=1)
    return idx, sims


def rank(query: QueryProfiles, embeddings: np.ndarray, refs: References, k: int) -> pd.DataFrame:
    """The top ``k`` perturbagens of each query profile (``RESULT_COLUMNS``)."""
    idx, sims = top_k(embeddings, refs.vectors, k)
    n, kk = idx.shape
    flat = idx.reshape(-1)
    return pd.DataFrame({
        "query_file": query.path.name,
        "query_path": str(query.path.resolve()),
        "query_id": np.repeat(np.asarray(query.profile_ids, object), kk),
        "rank": np.tile(np.arange(1, kk + 1), n).astype(np.int64),
        "pert_id": refs.pert_id[flat], "pert_iname": refs.pert_iname[flat],
        "pert_type": refs.pert_type[flat], "cell_id": refs.cell_id,
        "similarity": sims.reshape(-1).astype(np.float64),
        "moa": refs.moa[flat], "target": refs.target[flat],
        "model_version": refs.model_version,
    }, columns=RESULT_COLUMNS)


# --------------------------------------------------------------------------------------
# The whole read-across: model, genes, references
# --------------------------------------------------------------------------------------
@dataclass
class ReadAcrossResult:
    query: QueryProfiles
    embeddings: np.ndarray          # (n, d)
    hits: pd.DataFrame              # RESULT_COLUMNS


class ReadAcross:
    """The current model, gene index and reference perturbagens, loaded once.

    Parameters
    ----------
    model_dir
        The ``embedding_model`` directory (``embedding.keras`` + ``card.json``).
    genes_paths, perturbagens_paths
        The lake's ``genes`` and ``perturbagens`` tables.
    perturbagen_embeddings
        The ``perturbagen_embeddings`` Parquet file, made by this model.
    """

    def __init__(self, model_dir: str | Path, genes_paths: Sequence[str | Path],
                 perturbagens_paths: Sequence[str | Path], perturbagen_embeddings: str | Path,
                 *, cell: str | None = None, pert_type: str | None = None):
        from l1000_assets.core.embeddings import model_version
        from l1000_assets.core.model_store import CARD_FILE, load_card, load_embedding

        self.model_dir = Path(model_dir)
        card_path = self.model_dir / CARD_FILE
        if not card_path.exists():
            raise L1000InputError(self.model_dir, "no trained model: materialize "
                                                  "embedding_model first")
        self.card = load_card(self.model_dir)
        self.version = model_version(card_path)
        self.genes = GeneIndex.from_genes(read_genes(genes_paths),
                                          self.card.get("gene_order", []), card_path)
        self.references = load_references(perturbagen_embeddings,
                                          read_annotations(perturbagens_paths),
                                          cell=cell, pert_type=pert_type)
        if self.references.model_version != self.version:
            raise L1000InputError(perturbagen_embeddings,
                                  f"made by model {self.references.model_version}, but the "
                                  f"current model is {self.version}: materialize "
                                  "profile_embeddings and perturbagen_embeddings again")
        self.model = load_embedding(self.model_dir)
        n_in, dim = self.model.input_shape[-1], self.model.output_shape[-1]
        if n_in != len(self.genes.gene_order):
            raise L1000InputError(self.model_dir, f"model/gene-order mismatch: the model takes "
                                                  f"{n_in} inputs, its card lists "
                                                  f"{len(self.genes.gene_order)} genes")
        if dim != self.references.vectors.shape[1]:
            raise L1000InputError(perturbagen_embeddings,
                                  f"{self.references.vectors.shape[1]}-d embeddings, the model "
                                  f"makes {dim}-d ones")

    def embed(self, values: np.ndarray, *, batch_size: int = 4096,
              progress: Progress | None = None) -> np.ndarray:
        from l1000_assets.core.model import embed

        out = np.zeros((len(values), self.model.output_shape[-1]), np.float32)
        t0 = time.perf_counter()
        for b0 in range(0, len(values), batch_size):
            out[b0:b0 + batch_size] = embed(self.model, values[b0:b0 + batch_size])
            if progress:
                progress(min(b0 + batch_size, len(values)), len(values),
                         time.perf_counter() - t0)
        return out

    def run(self, path: str | Path, *, top: int = DEFAULT_TOP,
            options: QueryOptions = QueryOptions(),
            progress: Callable[[str], Progress | None] | None = None) -> ReadAcrossResult:
        """Read, check, embed and rank one query file. ``progress(stage)`` may return a
        progress callback for the stages ``"read"`` (GCTX blocks) and ``"embedded"``."""
        stage = progress or (lambda _: None)
        query = read_query_file(path, self.genes, options, progress=stage("read"))
        z = self.embed(query.values, progress=stage("embedded"))
        return ReadAcrossResult(query, z, rank(query, z, self.references, top))


# --------------------------------------------------------------------------------------
# The queries folder: which files are new or changed
# --------------------------------------------------------------------------------------
def file_fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def scan_queries(folder: str | Path, seen: dict[str, str], *, settle_seconds: float = 2.0,
                 now: float | None = None) -> tuple[list[Path], list[Path], dict[str, str]]:
    """Query files in ``folder`` (not recursive) that are new or changed since ``seen``
    (path -> size:mtime fingerprint), and files of other types.

    Files modified in the last ``settle_seconds`` (still being copied) wait for the next
    scan. Returns ``(changed, unsupported, fingerprints)``: the fingerprints of every file
    handled now or before, to pass as ``seen`` next time (removed files drop out).
    """
    folder = Path(folder)
    now = time.time() if now is None else now
    changed, unsupported, current = [], [], {}
    if not folder.is_dir():
        return changed, unsupported, current
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        key = str(path.resolve())
        fingerprint = file_fingerprint(path)
        if now - path.stat().st_mtime < settle_seconds:
            if key in seen:
                current[key] = seen[key]
            continue
        current[key] = fingerprint
        if seen.get(key) == fingerprint:
            continue
        (changed if is_query_file(path) else unsupported).append(path)
    return changed, unsupported, current


def dumps_cursor(state: dict) -> str:
    return json.dumps(state, sort_keys=True)


def loads_cursor(cursor: str | None) -> dict:
    if not cursor:
        return {}
    try:
        state = json.loads(cursor)
    except json.JSONDecodeError:
        return {}
    return state if isinstance(state, dict) else {}


def queries_in(folder: str | Path) -> list[Path]:
    """Every query file in ``folder`` (sorted)."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if is_query_file(p)) if folder.is_dir() else []


# --------------------------------------------------------------------------------------
# The results tables
# --------------------------------------------------------------------------------------
RESULT_SCHEMA = pa.schema([
    pa.field("query_file", pa.string()), pa.field("query_path", pa.string()),
    pa.field("query_id", pa.string()), pa.field("rank", pa.int64()),
    pa.field("pert_id", pa.string()), pa.field("pert_iname", pa.string()),
    pa.field("pert_type", pa.string()), pa.field("cell_id", pa.string()),
    pa.field("similarity", pa.float64()), pa.field("moa", pa.string()),
    pa.field("target", pa.string()), pa.field("model_version", pa.string())])
QUERY_FIELDS = [pa.field("query_file", pa.string()), pa.field("query_path", pa.string()),
                pa.field("query_id", pa.string()), pa.field("n_genes_in_file", pa.int64()),
                pa.field("n_landmarks_used", pa.int64()),
                pa.field("missing_genes", pa.list_(pa.string())),
                pa.field("model_version", pa.string())]


def query_schema(dim: int) -> pa.Schema:
    from l1000_assets.core.embeddings import DIM_KEY, EMBEDDING_COLUMN

    return pa.schema([*QUERY_FIELDS, pa.field(EMBEDDING_COLUMN, pa.list_(pa.float32(), dim))],
                     metadata={DIM_KEY: str(dim).encode()})


def _query_table(result: ReadAcrossResult, version: str, dim: int) -> pa.Table:
    from l1000_assets.core.embeddings import vector_array

    q = result.query
    n = len(q.profile_ids)
    return pa.table([
        pa.array([q.path.name] * n), pa.array([str(q.path.resolve())] * n),
        pa.array(q.profile_ids, pa.string()), pa.array([q.n_genes_in_file] * n, pa.int64()),
        pa.array([q.n_landmarks_used] * n, pa.int64()),
        pa.array([list(q.missing)] * n, pa.list_(pa.string())), pa.array([version] * n),
        vector_array(result.embeddings.reshape(n, dim))], schema=query_schema(dim))


def write_results(results_path: str | Path, queries_path: str | Path,
                  new: Sequence[ReadAcrossResult], *, replaced: Iterable[str | Path],
                  version: str, dim: int) -> tuple[int, int]:
    """Merge ``new`` results into the results and queries tables, atomically.

    Rows of the ``replaced`` query files (those just processed, whether they succeeded or
    not) and of query files that no longer exist are dropped; other files' rows stay.
    Returns the rows of the two tables.
    """
    from l1000_assets.core.atomic import atomic_file

    drop = {str(Path(p).resolve()) for p in replaced}
    tables = {}
    for path, schema, fresh in (
            (Path(results_path), RESULT_SCHEMA,
             [pa.Table.from_pandas(r.hits, schema=RESULT_SCHEMA, preserve_index=False)
              for r in new]),
            (Path(queries_path), query_schema(dim), [_query_table(r, version, dim) for r in new])):
        old = pq.read_table(path) if path.exists() else schema.empty_table()
        if old.schema.remove_metadata() != schema.remove_metadata():
            old = schema.empty_table()       # another model's width: recomputed, not merged
        keep = [p not in drop and Path(p).exists() for p in old.column("query_path").to_pylist()]
        merged = pa.concat_tables([old.filter(pa.array(keep, pa.bool_())).cast(schema), *fresh])
        with atomic_file(path) as tmp:
            pq.write_table(merged, tmp)
        tables[path] = merged.num_rows
    return tables[Path(results_path)], tables[Path(queries_path)]
