"""Read-across with a user's own profiles: parse, map genes, validate, embed, rank.

Inputs are **level-4-like landmark z-scores**: each value says how far a gene's expression
in the profile lies from its plate (or experiment) population, in robust standard
deviations (median 0, MAD-based scale). Raw counts, log expression or fold changes are
not z-scores: profiles that plainly are not (:func:`~l1000_assets.core.zscores.not_zscores`:
no negative value, only whole numbers, or a median far from 0) are refused unless
``allow_non_zscores``, and values far outside any z-score
(:data:`~l1000_assets.core.zscores.MAX_ABS_ZSCORE`) always are. A file larger than
``max_bytes`` is refused before it is read, and a text file whose first 64 KB hold binary
data after those are read.

Accepted files (one or many profiles each):

* ``.gct`` (GCT 1.2/1.3) and ``.gctx`` (HDF5): rows are genes, columns are profiles.
* ``.csv`` / ``.tsv`` / ``.txt`` (tab): the first column holds genes, every other column is
  one profile (header = profile id); or transposed (first column = profile ids, header =
  genes), detected from which axis holds the gene identifiers.

Genes are Entrez ids (``5720``) or symbols (``PSME1``, case-insensitive), mapped to the
978 landmark genes in the model's input order (``gene_order`` of the model card) through
the lake's ``genes`` table. A GCT or GCTX whose row ids are not genes (probe ids such as
``200814_at``, as in CMap's level-5 files) is read by its row metadata's gene ids or
symbols (:data:`GENE_FIELDS`), whichever names more genes. Known non-landmark genes are
ignored; landmark genes missing from the file are set to 0 (no change) and reported, and a
file missing more than
``max_missing`` of them is refused. Unknown identifiers, duplicate genes, non-numeric or
non-finite values and empty files are refused with :class:`L1000InputError` naming the
file and a few offending ids.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.progress import Progress
from l1000_assets.core.readacross.genes import GeneIndex
from l1000_assets.core.zscores import MAX_ABS_ZSCORE, OVERRIDE, not_zscores, out_of_range

QUERY_SUFFIXES = (".gct", ".gctx", ".csv", ".tsv", ".txt")
DEFAULT_MAX_MISSING = 50  # of 978 landmark genes (about 5%)
#: Largest query file read when ``max_bytes`` is not given: text files are parsed whole
#: (about 7 times their size in memory), GCTX files are streamed.
DEFAULT_MAX_TEXT_BYTES = 64 << 20
DEFAULT_MAX_GCTX_BYTES = 2 << 30
#: Row metadata fields that name a GCT/GCTX row's gene when its row id does not.
GENE_FIELDS = ("pr_gene_id", "pr_gene_symbol")
_SNIFF_BYTES = 1 << 16


@dataclass
class QueryProfiles:
    """Profiles of one query file, mapped to the model input."""

    path: Path
    profile_ids: list[str]
    values: np.ndarray  # (n, 978) float32 in gene_order
    n_genes_in_file: int
    missing: list[str]  # landmark gene ids absent (set to 0)
    ignored: int  # known non-landmark genes skipped
    unknown: list[str] = field(default_factory=list)  # skipped when allowed
    warnings: list[str] = field(default_factory=list)
    platform: str = "zscores"  # the input kind (core.readacross.platforms)
    transform: str = "level-4 z-scores as given"
    imputed: list[str] = field(default_factory=list)  # landmark ids imputed, not measured
    profile_warnings: list[list[str]] = field(default_factory=list)  # per profile

    @property
    def n_landmarks_used(self) -> int:
        return N_LANDMARKS - len(self.missing)


@dataclass(frozen=True)
class QueryOptions:
    max_missing: int = DEFAULT_MAX_MISSING
    allow_unknown: bool = False  # skip unknown gene identifiers instead of refusing
    allow_non_zscores: bool = False  # rank profiles that plainly are not z-scores (warned)
    # Larger files are refused unread; None: DEFAULT_MAX_TEXT_BYTES, DEFAULT_MAX_GCTX_BYTES.
    max_bytes: int | None = None
    # Impute missing landmarks from the measured ones (the model's landmark statistics)
    # instead of setting them to 0; max_missing still bounds how many may be missing.
    impute: bool = False


def is_query_file(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in QUERY_SUFFIXES and not path.name.startswith(".")
    )


def read_query_file(
    path: str | Path,
    genes: GeneIndex,
    options: QueryOptions = QueryOptions(),
    *,
    progress: Progress | None = None,
) -> QueryProfiles:
    """Parse, map and validate one query file (see the module docstring).

    Raises
    ------
    L1000InputError
        Naming the file and the problem: unsupported type, larger than ``max_bytes``, empty
        file, binary data in a text file, unknown gene identifiers, duplicate genes, too many
        landmark genes missing, non-numeric or non-finite values, duplicate profile ids,
        values that are not z-scores (unless allowed) or far outside any.
    """
    path = Path(path)
    if not path.is_file():
        raise L1000InputError(path, "file not found")
    suffix = path.suffix.lower()
    if suffix not in QUERY_SUFFIXES:
        raise L1000InputError(
            path,
            f"unsupported file type {suffix or '(none)'!r}: expected {', '.join(QUERY_SUFFIXES)}",
        )
    size = path.stat().st_size
    if size == 0:
        raise L1000InputError(path, "empty file")
    limit = options.max_bytes
    if limit is None:
        limit = DEFAULT_MAX_GCTX_BYTES if suffix == ".gctx" else DEFAULT_MAX_TEXT_BYTES
    if size > limit:
        raise L1000InputError(
            path,
            f"{size:,} bytes, more than the {limit:,} a query file may have "
            "(max_bytes; l1000 read-across --max-bytes): not read",
        )
    if suffix == ".gctx":
        return _read_gctx(path, genes, options, progress)
    with open(path, "rb") as f:
        if b"\0" in f.read(_SNIFF_BYTES):
            raise L1000InputError(path, "binary data, not a text table (GCT, CSV or TSV)")
    if suffix == ".gct":
        from l1000_assets.core.formats.gct import GctReader

        gct = GctReader(path)
        return _assemble(
            path,
            _gene_labels(gct.row_ids, gct.row_metadata, genes),
            [str(c) for c in gct.col_ids],
            lambda rows: gct.values[:, rows],
            genes,
            options,
        )
    return _read_table(path, genes, options)


def _gene_labels(
    row_ids: np.ndarray, row_metadata: Callable[[], pd.DataFrame], genes: GeneIndex
) -> list[str]:
    """The row ids, or the row metadata field of :data:`GENE_FIELDS` that names more genes
    of ``genes`` when the row ids are not all genes (probe ids)."""
    labels = [str(r) for r in row_ids]
    best = genes.matches(labels)
    if best == len(labels):
        return labels
    meta = row_metadata()
    for name in (f for f in GENE_FIELDS if f in meta.columns):
        candidate = [str(v) for v in meta[name].tolist()]
        if (n := genes.matches(candidate)) > best:
            labels, best = candidate, n
    return labels


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
        raise L1000InputError(
            path,
            f"{len(unknown)} unknown gene identifier(s), neither an "
            "Entrez gene id nor a symbol of the genes table: "
            f"{preview_ids(unknown)}; set allow_unknown_genes (l1000 read-across "
            "--allow-unknown-genes) to skip these rows",
        )
    duplicates = {pos: names for pos, names in seen.items() if len(names) > 1}
    if duplicates:
        shown = [
            f"{genes.describe(genes.gene_order[p])} as {' and '.join(map(repr, n))}"
            for p, n in list(duplicates.items())[:5]
        ]
        raise L1000InputError(
            path, f"{len(duplicates)} landmark gene(s) given more than once: " + "; ".join(shown)
        )
    missing = [g for i, g in enumerate(genes.gene_order) if i not in seen]
    if len(missing) > options.max_missing:
        shown = preview_ids(genes.describe(g) for g in missing)
        raise L1000InputError(
            path,
            f"{len(missing)} of {N_LANDMARKS} landmark genes missing, more than the "
            f"{options.max_missing} allowed: {shown}"
            f"{' (no gene identifier matched the genes table)' if not rows else ''}",
        )
    return np.asarray(rows, np.int64), np.asarray(positions, np.int64), missing, ignored, unknown


def _assemble(
    path: Path,
    gene_labels: Sequence[object],
    profile_ids: list[str],
    take: Callable[[np.ndarray], np.ndarray],
    genes: GeneIndex,
    options: QueryOptions,
) -> QueryProfiles:
    if not profile_ids:
        raise L1000InputError(path, "no profiles in the file (only gene identifiers)")
    _check_unique(path, profile_ids)
    rows, positions, missing, ignored, unknown = _map_genes(path, gene_labels, genes, options)
    values = np.zeros((len(profile_ids), N_LANDMARKS), np.float32)
    values[:, positions] = take(rows)
    _check_finite(path, values, profile_ids)
    return QueryProfiles(
        path,
        profile_ids,
        values,
        len(gene_labels),
        missing,
        ignored,
        unknown,
        _check_scale(path, values, profile_ids, options),
    )


def _check_unique(path: Path, profile_ids: Sequence[str]) -> None:
    ids = pd.Series(profile_ids)
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise L1000InputError(path, f"duplicate profile id(s): {preview_ids(dup)}")


def _check_scale(
    path: Path, values: np.ndarray, profile_ids: Sequence[str], options: QueryOptions
) -> list[str]:
    """Refuse profiles with values far outside any z-score, and (unless
    ``allow_non_zscores``, then as warnings) profiles that plainly are not z-scores; return
    the other scale warnings."""
    ids = np.asarray(profile_ids, object)
    huge = out_of_range(values)
    if huge.any():
        raise L1000InputError(
            path,
            f"{huge.sum()} profile(s) with values beyond +-{MAX_ABS_ZSCORE:g}, far outside "
            f"any z-score (largest {np.abs(values).max():.3g}): {preview_ids(ids[huge])}",
        )
    found = [
        f"{rows.sum()} profile(s) with {reason}: {preview_ids(ids[rows])}"
        for reason, rows in not_zscores(values).items()
    ]
    if found and not options.allow_non_zscores:
        raise L1000InputError(
            path,
            "not level-4 z-scores: "
            + "; ".join(found)
            + ". Query profiles are robust z-scores against the plate population: convert "
            f"them to z-scores first, or set {OVERRIDE} (l1000 read-across "
            "--allow-non-zscores) to rank them anyway",
        )
    return [f"not z-scores, ranked as allowed: {f}" for f in found] + scale_warnings(
        values, profile_ids
    )


def _check_finite(path: Path, values: np.ndarray, profile_ids: Sequence[str]) -> None:
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise L1000InputError(
            path,
            "non-finite values (NaN, inf or empty) in profile(s) "
            f"{preview_ids(np.asarray(profile_ids, object)[bad])}",
        )


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
            raise L1000InputError(
                path,
                "one column only: expected a gene column and one "
                f"column per profile, separated by {separator}",
            )
        body = pd.read_csv(
            path,
            sep=sep,
            header=None,
            skiprows=1,
            index_col=0,
            dtype={0: str},
            keep_default_na=False,
            na_values=["", "NA", "NaN", "nan", "-nan", "N/A"],
        )
    except pd.errors.EmptyDataError as exc:
        raise L1000InputError(path, "empty file (a header and no data)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, csv.Error) as exc:
        raise L1000InputError(path, f"cannot parse as {kind}: {str(exc).strip()}") from exc
    if body.shape[0] == 0:
        raise L1000InputError(path, "empty file (a header and no data)")
    if body.shape[1] != len(header) - 1:
        raise L1000InputError(
            path, f"{len(header)} header fields but {body.shape[1] + 1} fields in the data rows"
        )
    if all(pd.api.types.is_numeric_dtype(t) for t in body.dtypes):
        values = body.to_numpy(np.float32)
    else:
        text = pd.read_csv(
            path, sep=sep, header=None, skiprows=1, index_col=0, dtype=str, keep_default_na=False
        ).to_numpy()
        values = _parse_numbers(path, text, [str(x) for x in body.index], header[1:])
    first = [str(x) for x in body.index]
    header = header[1:]
    if genes.matches(header) > genes.matches(first):  # profiles as rows, genes as columns
        labels, profile_ids = header, first
    else:
        labels, profile_ids, values = first, header, values.T
    return _assemble(path, labels, profile_ids, lambda rows: values[:, rows], genes, options)


def _parse_numbers(
    path: Path, text: np.ndarray, row_ids: Sequence[str], column_ids: Sequence[object]
) -> np.ndarray:
    """``text`` (a table of str, as in the file) as float32; non-numeric cells are an
    error naming the cell's row and column."""
    flat = pd.Series(text.reshape(-1)).str.strip()
    numbers = pd.to_numeric(flat, errors="coerce")
    bad = numbers.isna() & (flat != "") & ~flat.str.lower().isin(["nan", "na", "-nan"])
    if bad.any():
        idx = np.flatnonzero(bad.to_numpy())
        shown = [
            f"{flat.iloc[i]!r} (row {row_ids[i // text.shape[1]]!r}, "
            f"column {str(column_ids[i % text.shape[1]])!r})"
            for i in idx[:3]
        ]
        more = f" and {len(idx) - 3} more" if len(idx) > 3 else ""
        raise L1000InputError(path, f"{len(idx)} non-numeric value(s): {', '.join(shown)}{more}")
    return numbers.to_numpy(np.float64).astype(np.float32).reshape(text.shape)


def _read_gctx(
    path: Path, genes: GeneIndex, options: QueryOptions, progress: Progress | None
) -> QueryProfiles:
    from l1000_assets.core.formats.gctx import GctxReader

    with GctxReader(path) as reader:
        labels = _gene_labels(reader.row_ids, reader.row_metadata, genes)
        profile_ids = [str(c) for c in reader.col_ids]
        if not profile_ids:
            raise L1000InputError(path, "no profiles in the file")
        _check_unique(path, profile_ids)
        rows, positions, missing, ignored, unknown = _map_genes(path, labels, genes, options)
        values = np.zeros((len(profile_ids), N_LANDMARKS), np.float32)
        t0 = time.perf_counter()
        if len(rows):
            order = np.argsort(rows)  # read the rows in file order, place them by position
            for block in reader.iter_blocks(rows[order], check_finite=False):
                values[block.start : block.stop, positions[order]] = block.values
                if progress:
                    progress(block.stop, len(profile_ids), time.perf_counter() - t0)
    _check_finite(path, values, profile_ids)
    return QueryProfiles(
        path,
        profile_ids,
        values,
        len(labels),
        missing,
        ignored,
        unknown,
        _check_scale(path, values, profile_ids, options),
    )


def scale_warnings(values: np.ndarray, profile_ids: Sequence[str]) -> list[str]:
    """Warnings for profiles that may be z-scores but look odd: a wide spread, or none."""
    out = []
    spread = values.std(axis=1)
    ids = np.asarray(profile_ids, object)
    wide = spread > 10
    if wide.any():
        out.append(
            f"{wide.sum()} profile(s) spread far wider than level-4 z-scores (SD > 10): "
            f"{preview_ids(ids[wide])}"
        )
    flat = spread == 0
    if flat.any():
        out.append(f"{flat.sum()} profile(s) are constant: {preview_ids(ids[flat])}")
    return out
