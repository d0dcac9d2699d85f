"""Query files of other platforms, turned into one level-4-like landmark z-score profile per
treatment group (see :mod:`~l1000_assets.core.readacross.platforms.transforms` for the
scale and :mod:`~l1000_assets.core.readacross.platforms.identifiers` for gene ids).

Input kinds (:data:`PLATFORMS`):

``rnaseq``
    A counts matrix, genes x samples (CSV or TSV; a first column of gene ids, optionally
    more non-numeric columns such as ``gene_name``; one numeric column per sample), with a
    sample sheet (columns ``sample`` and ``group``, ``control`` marking the reference
    samples; optional ``batch`` or ``plate``). Every treated sample is z-scored against the
    controls of its batch; a group's profile is the mean of its samples' z-scores.
``de``
    A differential-expression table: a gene column, ``log2fc`` (``log2FoldChange`` of
    DESeq2, ``logFC`` of edgeR and limma), optionally a statistic (``stat``, ``t``), a
    p-value and an adjusted p-value, and a ``contrast`` column for several queries in one
    file.
``l1000-level3``
    A level-3 plate (GCT or GCTX; log2 expression; 978 or 12,328 rows): every well against
    the plate population (CMap's level 4), or, with a sample sheet, every group against the
    sheet's controls.

Landmarks the file does not measure are imputed (:class:`LandmarkStats.impute`) when the
model has landmark statistics and at least ``min_landmarks`` are measured; the query
records which. Bad input raises one :class:`L1000InputError` naming the file and the ids.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.readacross.genes import GeneIndex
from l1000_assets.core.readacross.platforms import transforms as tf
from l1000_assets.core.readacross.platforms.identifiers import MappedGenes, map_identifiers
from l1000_assets.core.readacross.platforms.landmark_stats import LandmarkStats
from l1000_assets.core.readacross.query_files import QueryProfiles

PLATFORMS = ("zscores", "rnaseq", "de", "l1000-level3")
CONTROL_GROUP = "control"
DEFAULT_MIN_LANDMARKS = 100
LOG2FC_COLUMNS = ("log2fc", "log2foldchange", "logfc", "log2_fold_change", "lfc")
STAT_COLUMNS = ("stat", "t", "z", "wald", "statistic")
PVALUE_COLUMNS = ("pvalue", "p.value", "p_value", "pval")
PADJ_COLUMNS = ("padj", "fdr", "adj.p.val", "qvalue", "p_adj", "padj_bh")
GENE_COLUMNS = ("gene", "gene_id", "gene_name", "symbol", "entrez", "id", "probe")
DE_VALUES = ("auto", "log2fc")
CONTROL_SPREADS = ("batch", "pooled")


@dataclass(frozen=True)
class PlatformOptions:
    count_transform: str = tf.DEFAULT_COUNT_TRANSFORM
    scale: str = tf.DEFAULT_SCALE  # "none" or "quantile" (onto the lake's level-4 z-scores)
    de_value: str = "auto"  # statistic when present (else from the p-value), or log2fc
    control_spread: str = "pooled"  # MAD over every batch's controls, or the batch's ("batch")
    min_landmarks: int = DEFAULT_MIN_LANDMARKS
    impute: bool = True
    max_bytes: int = 256 << 20


@dataclass(frozen=True)
class SampleSheet:
    path: Path
    samples: list[str]
    group: dict[str, str]
    batch: dict[str, str]

    @property
    def groups(self) -> list[str]:
        seen = dict.fromkeys(self.group[s] for s in self.samples)
        return [g for g in seen if not is_control(g)]


def is_control(group: str) -> bool:
    return str(group).strip().lower() == CONTROL_GROUP


def _sep(path: Path) -> str:
    return "," if path.suffix.lower() == ".csv" else "\t"


def _check_size(path: Path, options: PlatformOptions) -> None:
    if not path.is_file():
        raise L1000InputError(path, "file not found")
    size = path.stat().st_size
    if size == 0:
        raise L1000InputError(path, "empty file")
    if size > options.max_bytes:
        raise L1000InputError(path, f"{size:,} bytes, more than the {options.max_bytes:,} allowed")


def read_sample_sheet(path: str | Path) -> SampleSheet:
    """A sample sheet: ``sample``, ``group`` (``control`` = reference), optional ``batch``
    or ``plate``."""
    path = Path(path)
    if not path.is_file():
        raise L1000InputError(path, "sample sheet not found")
    try:
        sheet = pd.read_csv(path, sep=_sep(path), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise L1000InputError(path, f"cannot read the sample sheet: {exc}") from exc
    sheet.columns = [str(c).strip().lower() for c in sheet.columns]
    missing = [c for c in ("sample", "group") if c not in sheet.columns]
    if missing:
        raise L1000InputError(
            path, f"sample sheet lacks column(s) {', '.join(missing)} (has {list(sheet.columns)})"
        )
    samples = [s.strip() for s in sheet["sample"]]
    dup = sorted({s for s in samples if samples.count(s) > 1})
    if dup:
        raise L1000InputError(path, f"samples listed more than once: {preview_ids(dup)}")
    empty = [s for s, g in zip(samples, sheet["group"]) if not g.strip()]
    if empty:
        raise L1000InputError(path, f"samples without a group: {preview_ids(empty)}")
    batch_col = next((c for c in ("batch", "plate") if c in sheet.columns), None)
    batch = dict(zip(samples, sheet[batch_col].str.strip() if batch_col else [""] * len(sheet)))
    group = dict(zip(samples, sheet["group"].str.strip()))
    if not any(is_control(g) for g in group.values()):
        raise L1000InputError(
            path,
            f"no control group: one group must be named {CONTROL_GROUP!r} (the reference "
            f"samples); groups are {preview_ids(sorted(set(group.values())))}",
        )
    return SampleSheet(path, samples, group, batch)


def _match_sheet(matrix: Path, sheet: SampleSheet, columns: list[str]) -> None:
    absent = [s for s in sheet.samples if s not in set(columns)]
    unlisted = [c for c in columns if c not in sheet.group]
    if absent or unlisted:
        parts = []
        if absent:
            parts.append(
                f"{len(absent)} sample(s) of {sheet.path.name} absent from the "
                f"matrix: {preview_ids(absent)}"
            )
        if unlisted:
            parts.append(
                f"{len(unlisted)} matrix column(s) not in the sheet: {preview_ids(unlisted)}"
            )
        raise L1000InputError(matrix, "sample sheet and matrix disagree: " + "; ".join(parts))


# --------------------------------------------------------------------------------------
# Tables: gene columns and numeric columns
# --------------------------------------------------------------------------------------
def _read_table(path: Path) -> pd.DataFrame:
    sep = _sep(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            header = next(csv.reader(f, delimiter=sep), None)
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise L1000InputError(path, f"cannot parse as a table: {str(exc).strip()}") from exc
    if header is None or table.empty:
        raise L1000InputError(path, "empty file (no rows)")
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise L1000InputError(path, f"duplicate column name(s): {preview_ids(dup)}")
    if not header[0].strip():
        table.columns = ["gene", *table.columns[1:]]  # R's write.csv leaves it blank
    return table


def _to_number(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column.str.strip().replace({"NA": "nan", "": "nan"}), errors="coerce")


def _numeric(table: pd.DataFrame) -> dict[str, pd.Series]:
    """The numeric columns of a table read as text (blanks and NA allowed). The first
    column and columns named like gene columns (:data:`GENE_COLUMNS`) hold identifiers,
    even when they are numbers (Entrez ids)."""
    out = {}
    for i, c in enumerate(table.columns):
        if i == 0 or str(c).strip().lower() in GENE_COLUMNS:
            continue
        values = _to_number(table[c])
        text = table[c].str.strip()
        blank = text.isin(["", "NA", "nan", "NaN"])
        if (values.notna() | blank).all() and values.notna().any():
            out[c] = values
    return out


def _best_labels(
    path: Path,
    table: pd.DataFrame,
    numeric: Mapping[str, pd.Series],
    genes: GeneIndex,
    gene_map: Mapping[str, str] | None,
    allow_repeats_of: tuple[str, ...],
) -> MappedGenes:
    """The gene ids of the text column that names the most genes (checked for mixed types
    and repeats)."""
    text_cols = [c for c in table.columns if c not in numeric]
    if not text_cols:
        raise L1000InputError(path, "no gene identifier column (every column is numeric)")

    def score(c: str) -> int:
        labels = table[c].tolist()
        mapped = (
            [gene_map.get(x.split(".")[0], gene_map.get(x, x)) for x in labels]
            if gene_map
            else labels
        )
        return genes.matches(mapped)

    best = max(text_cols, key=score)
    if score(best) == 0:
        best = text_cols[0]  # the identifier errors (e.g. Ensembl without mapping) say why
    return map_identifiers(
        path, table[best].tolist(), genes, gene_map=gene_map, allow_repeats_of=allow_repeats_of
    )


def _to_landmarks(
    gene_ids: list[str | None], values: np.ndarray, genes: GeneIndex
) -> tuple[np.ndarray, np.ndarray]:
    """(profiles x 978 values, measured mask) from genes-in-rows ``values`` (genes x n)."""
    out = np.zeros((values.shape[1], N_LANDMARKS))
    measured = np.zeros(N_LANDMARKS, bool)
    for row, gid in enumerate(gene_ids):
        pos = genes.position.get(gid) if gid is not None else None
        if pos is not None:
            out[:, pos] = values[row]
            measured[pos] = True
    return out, measured


# --------------------------------------------------------------------------------------
# The input kinds
# --------------------------------------------------------------------------------------
@dataclass
class _Profiles:
    ids: list[str]
    values: np.ndarray  # (n, 978)
    measured: np.ndarray  # (978,) bool
    transform: str
    n_genes: int
    n_unknown: int
    warnings: list[str]
    profile_warnings: list[list[str]]


def _group_profiles(
    path: Path, z: np.ndarray, columns: list[str], sheet: SampleSheet
) -> tuple[list[str], np.ndarray, list[list[str]]]:
    """Mean z-score (genes x groups) of every treated group; warnings per group."""
    ids, out, warns = [], [], []
    for g in sheet.groups:
        cols = [i for i, c in enumerate(columns) if sheet.group[c] == g]
        ids.append(g)
        out.append(z[:, cols].mean(axis=1))
        warns.append(
            [f"group {g!r} has a single replicate: its profile is noisier"]
            if len(cols) == 1
            else []
        )
    if not ids:
        raise L1000InputError(path, "no treated group in the sample sheet (only controls)")
    return ids, np.stack(out, axis=1), warns


def _zscore_by_batch(
    path: Path, x: np.ndarray, columns: list[str], sheet: SampleSheet, spread: str = "batch"
) -> np.ndarray:
    """Every column of ``x`` (genes x samples) z-scored against the controls of its batch:
    their median, and the MAD of every batch's controls around their own batch's median
    (``spread="pooled"``, the default: a handful of controls per batch gives a noisy MAD;
    pooled, it ranked the true perturbagen better on the validation) or of the batch's own
    controls (``"batch"``, as CMap does with a plate's hundreds of wells); floored at 0.1
    as CMap floors it."""
    z = np.zeros_like(x)
    batches = list(dict.fromkeys(sheet.batch[c] for c in columns))
    is_ctl = np.array([is_control(sheet.group[c]) for c in columns])
    centred = []
    for b in batches:
        cols = np.array([sheet.batch[c] == b for c in columns])
        if not (cols & is_ctl).any():
            treated = [c for c, keep in zip(columns, cols) if keep]
            raise L1000InputError(
                sheet.path,
                f"batch {b!r} has no control samples, so its samples "
                f"{preview_ids(treated)} have no reference",
            )
        ctl = x[:, cols & is_ctl]
        centred.append(ctl - np.median(ctl, axis=1, keepdims=True))
    if spread == "pooled":
        pooled = np.concatenate(centred, axis=1)
        mad = np.median(np.abs(pooled - np.median(pooled, axis=1, keepdims=True)), axis=1)
    for b, dev in zip(batches, centred):
        cols = np.array([sheet.batch[c] == b for c in columns])
        median = np.median(x[:, cols & is_ctl], axis=1, keepdims=True)
        scale = mad if spread == "pooled" else np.median(np.abs(dev), axis=1)
        z[:, cols] = (x[:, cols] - median) / (
            tf.MAD_SCALE * np.maximum(scale, tf.CMAP_MIN_MAD)[:, None]
        )
    return z


def _rnaseq(
    path: Path,
    genes: GeneIndex,
    sheet: SampleSheet | None,
    gene_map: Mapping[str, str] | None,
    options: PlatformOptions,
) -> _Profiles:
    if sheet is None:
        raise L1000InputError(
            path, "an rnaseq counts matrix needs a sample sheet (--samples SHEET: sample, group)"
        )
    table = _read_table(path)
    numeric = _numeric(table)
    mapped = _best_labels(path, table, numeric, genes, gene_map, ("probe",))
    columns = [c for c in table.columns if c in numeric]
    _match_sheet(path, sheet, columns)
    counts = np.column_stack([numeric[c].to_numpy(np.float64) for c in columns])
    keep = np.array([not lab.startswith("__") for lab in mapped.labels])
    bad_rows = ~np.isfinite(counts).all(axis=1) & keep
    if bad_rows.any():
        rows = np.asarray(mapped.labels, object)[bad_rows]
        raise L1000InputError(path, f"missing or non-finite counts in gene(s) {preview_ids(rows)}")
    for problem, mask in (
        ("negative", counts < 0),
        ("non-integer", np.abs(counts - np.rint(counts)) > 1e-6),
    ):
        cells = np.argwhere(mask & keep[:, None])
        if len(cells):
            shown = [
                f"{mapped.labels[r]!r} in {columns[c]!r} ({counts[r, c]:g})" for r, c in cells[:3]
            ]
            raise L1000InputError(
                path,
                f"{len(cells)} {problem} count(s), not read counts: {', '.join(shown)}"
                + (
                    " (estimated counts of salmon or RSEM: round them first)"
                    if problem == "non-integer"
                    else ""
                ),
            )
    counts, labels = (
        counts[keep],
        [g for g, k in zip(mapped.gene_ids, mapped.labels) if not k.startswith("__")],
    )
    # Probes of one gene summed; unknown genes kept (they count for the library size).
    known = pd.Series([g for g in labels if g is not None]).unique().tolist()
    index = {g: i for i, g in enumerate(known)}
    gene_counts = np.zeros((len(known), counts.shape[1]))
    for row, gid in enumerate(labels):
        if gid is not None:
            gene_counts[index[gid]] += counts[row]
    other = counts[[g is None for g in labels]]
    full = np.vstack([gene_counts, other])
    controls = np.array([is_control(sheet.group[c]) for c in columns])
    logx = tf.log_expression(full, options.count_transform, controls=controls)[: len(known)]
    z = _zscore_by_batch(path, logx, columns, sheet, options.control_spread)
    ids, profiles, warns = _group_profiles(path, z, columns, sheet)
    values, measured = _to_landmarks(known, profiles, genes)
    transform = (
        f"counts: median-of-ratios size factors, {options.count_transform}, robust z "
        f"(median, 1.4826 MAD, MAD >= {tf.CMAP_MIN_MAD}) against the controls of each batch "
        f"(MAD {options.control_spread}), mean over the group's samples"
    )
    return _Profiles(
        ids, values, measured, transform, len(mapped.labels), mapped.n_unknown, [], warns
    )


def _column(table_cols: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.strip().lower(): c for c in table_cols}
    return next((lower[n] for n in names if n in lower), None)


def _de(
    path: Path,
    genes: GeneIndex,
    gene_map: Mapping[str, str] | None,
    options: PlatformOptions,
) -> _Profiles:
    table = _read_table(path)
    cols = list(table.columns)
    lfc_col = _column(cols, LOG2FC_COLUMNS)
    if lfc_col is None:
        raise L1000InputError(
            path,
            f"no log2 fold-change column (one of {', '.join(LOG2FC_COLUMNS)}, any case); "
            f"columns are {preview_ids(cols)}",
        )
    contrast_col = _column(cols, ("contrast",))
    contrasts = (
        list(dict.fromkeys(table[contrast_col].str.strip())) if contrast_col else [path.stem]
    )
    numeric = _numeric(table.drop(columns=[contrast_col] if contrast_col else []))
    stat_col = _column(list(numeric), STAT_COLUMNS)
    p_col = _column(list(numeric), PVALUE_COLUMNS)
    ids, values, warns, n_genes, n_unknown = [], [], [], 0, 0
    measured = np.zeros(N_LANDMARKS, bool)
    used = "log2fc"
    for contrast in contrasts:
        part = table if not contrast_col else table[table[contrast_col].str.strip() == contrast]
        text_part = (part.drop(columns=[contrast_col]) if contrast_col else part).reset_index(
            drop=True
        )
        part_numeric = {c: _to_number(text_part[c]) for c in numeric}
        mapped = _best_labels(path, text_part, part_numeric, genes, gene_map, ())
        lfc = part_numeric[lfc_col].to_numpy(np.float64)
        if options.de_value == "auto" and stat_col is not None:
            value, used = part_numeric[stat_col].to_numpy(np.float64), f"statistic ({stat_col})"
        elif options.de_value == "auto" and p_col is not None:
            p = np.clip(part_numeric[p_col].to_numpy(np.float64), 1e-300, 1.0)
            value = np.sign(lfc) * norm.isf(p / 2)
            used = f"signed z from the p-value ({p_col})"
        else:
            value = lfc
        finite = np.isfinite(value)
        if lfc_col is not None and used == "log2fc":
            value = np.where(finite, value, 0.0)
            value = tf.spread_scaled(value[:, None])[:, 0]
            used = f"log2 fold change ({lfc_col}) over its robust spread across genes"
        value = np.where(np.isfinite(value), value, 0.0)  # NA rows of DESeq2: no change
        gene_ids = [g if f else None for g, f in zip(mapped.gene_ids, finite)]
        v, m = _to_landmarks(gene_ids, value[:, None], genes)
        ids.append(str(contrast))
        values.append(v[0])
        measured |= m
        n_genes, n_unknown = n_genes + len(mapped.labels), n_unknown + mapped.n_unknown
        na = int((~finite).sum())
        warns.append([f"{na} gene(s) without a value (NA) treated as unchanged"] if na else [])
    return _Profiles(
        ids, np.stack(values), measured, f"DE table: {used}", n_genes, n_unknown, [], warns
    )


def _level3(
    path: Path,
    genes: GeneIndex,
    sheet: SampleSheet | None,
    options: PlatformOptions,
) -> _Profiles:
    from l1000_assets.core.readacross.query_files import _gene_labels

    suffix = path.suffix.lower()
    if suffix == ".gctx":
        from l1000_assets.core.formats.gctx import GctxReader

        with GctxReader(path) as reader:
            labels = _gene_labels(reader.row_ids, reader.row_metadata, genes)
            columns = [str(c) for c in reader.col_ids]
            x = np.zeros((len(labels), len(columns)), np.float64)
            for block in reader.iter_blocks(np.arange(len(labels)), check_finite=False):
                x[:, block.start : block.stop] = block.values.T
    elif suffix == ".gct":
        from l1000_assets.core.formats.gct import GctReader

        gct = GctReader(path)
        labels = _gene_labels(gct.row_ids, gct.row_metadata, genes)
        columns = [str(c) for c in gct.col_ids]
        x = np.asarray(gct.values, np.float64).T
    else:
        raise L1000InputError(path, f"a level-3 plate is a GCT or GCTX file, not {suffix!r}")
    mapped = map_identifiers(path, labels, genes, allow_repeats_of=())
    bad = ~np.isfinite(x).all(axis=0)
    if bad.any():
        raise L1000InputError(
            path, f"non-finite values in well(s) {preview_ids(np.asarray(columns)[bad])}"
        )
    warnings = []
    if np.median(x) < 1.0:
        warnings.append(
            f"median value {np.median(x):.2f}: level-3 plates hold log2 expression (3 to 15); "
            "is this level 4 already (--platform zscores)?"
        )
    if sheet is None:
        z = tf.robust_zscore(x)
        ids, profiles, warns = columns, z, [[] for _ in columns]
        transform = "level 3: robust z against the plate population (CMap's level 4, ZSPC)"
    else:
        _match_sheet(path, sheet, columns)
        z = _zscore_by_batch(path, x, columns, sheet, options.control_spread)
        ids, profiles, warns = _group_profiles(path, z, columns, sheet)
        transform = (
            "level 3: robust z against the sheet's control wells of each plate (MAD "
            f"{options.control_spread}), mean over the group's wells"
        )
    values, measured = _to_landmarks(mapped.gene_ids, profiles, genes)
    return _Profiles(
        list(ids), values, measured, transform, len(labels), mapped.n_unknown, warnings, warns
    )


def read_platform_query(
    path: str | Path,
    platform: str,
    genes: GeneIndex,
    *,
    samples: str | Path | None = None,
    gene_map: Mapping[str, str] | None = None,
    stats: LandmarkStats | None = None,
    options: PlatformOptions = PlatformOptions(),
) -> QueryProfiles:
    """One query profile per treatment group (contrast, or well) of a file of another
    platform, in the model's landmark order (see the module docstring)."""
    path = Path(path)
    if platform not in PLATFORMS[1:]:
        raise L1000InputError(path, f"unknown platform {platform!r}: one of {', '.join(PLATFORMS)}")
    _check_size(path, options)
    sheet = read_sample_sheet(samples) if samples is not None else None
    if platform == "rnaseq":
        got = _rnaseq(path, genes, sheet, gene_map, options)
    elif platform == "de":
        got = _de(path, genes, gene_map, options)
    else:
        got = _level3(path, genes, sheet, options)
    n_measured = int(got.measured.sum())
    missing = [g for g, m in zip(genes.gene_order, got.measured) if not m]
    if n_measured < options.min_landmarks:
        raise L1000InputError(
            path,
            f"{n_measured} of {N_LANDMARKS} landmark genes measured, fewer than the "
            f"{options.min_landmarks} needed (min_landmarks)",
        )
    values = got.values
    transform = got.transform
    if options.scale == "quantile":
        if stats is None:
            raise L1000InputError(path, "quantile mapping needs the model's landmark statistics")
        values = values.copy()
        values[:, got.measured] = tf.quantile_map(values[:, got.measured].T, stats.quantiles).T
        transform += "; quantile-mapped onto the lake's level-4 z-scores"
    warnings = list(got.warnings)
    imputed: list[str] = []
    if missing and options.impute and stats is not None:
        values = stats.impute(values, got.measured)
        imputed = missing
        transform += f"; {len(missing)} landmark(s) imputed (ridge on the measured ones)"
    elif missing:
        warnings.append(
            f"{len(missing)} landmark gene(s) not measured, set to 0"
            + ("" if stats is not None else " (the model has no landmark statistics to impute)")
        )
    if got.n_unknown:
        warnings.append(f"{got.n_unknown} identifier(s) not in the genes table, ignored")
    values = values.astype(np.float32)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise L1000InputError(
            path, f"non-finite profile(s): {preview_ids(np.asarray(got.ids)[bad])}"
        )
    return QueryProfiles(
        path,
        [str(i) for i in got.ids],
        values,
        got.n_genes,
        missing,
        0,
        [],
        warnings,
        platform=platform,
        transform=transform,
        imputed=imputed,
        profile_warnings=got.profile_warnings,
    )
