"""The canonical metadata schema every release is mapped onto.

Each release's metadata columns are renamed onto the canonical schema below; ``-666`` (and
empty) means missing.

Canonical tables (one Parquet file each per release):

``instances``  inst_id, pert_id, pert_iname, pert_type, cell_id, pert_dose, pert_dose_unit,
               pert_time, pert_time_unit, rna_plate, det_plate, release, profile_class
``genes``      gene_id, symbol, title, is_landmark, landmark_index, is_bing
``perturbagens`` pert_id, pert_iname, pert_type, moa, target, release
``cell_lines`` cell_id, primary_site, subtype, release
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

from l1000_assets.core.errors import L1000InputError, preview_ids

#: ``pert_type`` values that mark controls; such profiles never reach training.
CONTROL_PERT_TYPES = frozenset(
    {
        "ctl_vehicle",
        "ctl_vector",
        "ctl_untrt",
        "ctl_vehicle.cns",
        "ctl_vector.cns",
        "ctl_untrt.cns",
        "trt_sh.css",
    }
)
# Ligands (trt_lig) are proteins added to the medium, not genetic perturbations.
GENETIC_PERT_TYPES = frozenset(
    {
        "trt_sh",
        "trt_oe",
        "trt_xpr",
        "trt_sh.cgs",
        "trt_oe.mut",
        "trt_si",
    }
)


#: Landmark genes an L1000 profile measures (``pr_is_lm == 1`` in ``gene_info``).
N_LANDMARKS = 978

INSTANCE_COLUMNS = [
    "inst_id",
    "pert_id",
    "pert_iname",
    "pert_type",
    "cell_id",
    "pert_dose",
    "pert_dose_unit",
    "pert_time",
    "pert_time_unit",
    "rna_plate",
    "det_plate",
    "release",
    "profile_class",
]
GENE_COLUMNS = ["gene_id", "symbol", "title", "is_landmark", "landmark_index", "is_bing"]
PERT_COLUMNS = ["pert_id", "pert_iname", "pert_type", "moa", "target", "release"]
CELL_COLUMNS = ["cell_id", "primary_site", "subtype", "release"]


# Canonical name <- the names releases use for it (first match wins).
_INSTANCE_ALIASES: dict[str, tuple[str, ...]] = {
    "inst_id": ("inst_id", "sample_id", "cid", "id"),
    "pert_id": ("pert_id",),
    "pert_iname": ("pert_iname", "cmap_name"),
    "pert_type": ("pert_type",),
    "cell_id": ("cell_id", "cell_iname"),
    "pert_dose": ("pert_dose",),
    "pert_dose_unit": ("pert_dose_unit",),
    "pert_time": ("pert_time",),
    "pert_time_unit": ("pert_time_unit",),
    "rna_plate": ("rna_plate",),
    "det_plate": ("det_plate",),
}
_GENE_ALIASES = {
    "gene_id": ("pr_gene_id", "gene_id"),
    "symbol": ("pr_gene_symbol", "gene_symbol"),
    "title": ("pr_gene_title", "gene_title"),
}
_PERT_ALIASES = {
    "pert_id": ("pert_id",),
    "pert_iname": ("pert_iname", "cmap_name"),
    "pert_type": ("pert_type",),
    "moa": ("moa", "MOA"),
    "target": ("target",),
}
_CELL_ALIASES = {
    "cell_id": ("cell_id", "cell_iname"),
    "primary_site": ("primary_site",),
    "subtype": ("subtype", "cell_lineage"),
}
REQUIRED_INSTANCE = ("inst_id", "pert_id", "pert_type", "cell_id")
#: Canonical instance columns a release may lack, reported (:func:`instance_schema_drift`),
#: not refused: groups of which one column is enough (GEO's GSE92742 has ``rna_plate`` and
#: no ``det_plate``).
OPTIONAL_INSTANCE: tuple[tuple[str, ...], ...] = (
    ("pert_iname",),
    ("pert_dose",),
    ("pert_dose_unit",),
    ("pert_time",),
    ("pert_time_unit",),
    ("rna_plate", "det_plate"),
)


def _rename(df: pd.DataFrame, aliases: Mapping[str, tuple[str, ...]]) -> pd.DataFrame:
    out = {}
    for canonical, names in aliases.items():
        found = next((n for n in names if n in df.columns), None)
        out[canonical] = (
            df[found] if found is not None else pd.Series(pd.NA, index=df.index, dtype="string")
        )
    return pd.DataFrame(out)


def _require(df: pd.DataFrame, aliases, required, path, table: str) -> None:
    missing = [c for c in required if not any(a in df.columns for a in aliases[c])]
    if missing:
        raise L1000InputError(
            path,
            f"{table}: no column for {missing} (accepted names: "
            f"{ {c: aliases[c] for c in missing} }); columns found: "
            f"{preview_ids(df.columns, 12)}",
        )


def profile_class(pert_type: pd.Series) -> pd.Series:
    """control / compound / genetic / other, from ``pert_type``."""
    pt = pert_type.astype("string")
    out = np.select(
        [
            pt.isin(CONTROL_PERT_TYPES).fillna(False).to_numpy(),
            (pt == "trt_cp").fillna(False).to_numpy(),
            pt.isin(GENETIC_PERT_TYPES).fillna(False).to_numpy(),
        ],
        ["control", "compound", "genetic"],
        default="other",
    )
    return pd.Series(out, index=pert_type.index, dtype="string")


def canonical_instances(df: pd.DataFrame, release: str, *, path="inst_info") -> pd.DataFrame:
    """Map an ``inst_info``-like table onto the canonical ``instances`` schema."""
    _require(df, _INSTANCE_ALIASES, REQUIRED_INSTANCE, path, "instances")
    out = _rename(df, _INSTANCE_ALIASES)
    for col in ("pert_dose", "pert_time"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype("Float64")
    if out["pert_iname"].isna().all():
        out["pert_iname"] = out["pert_id"]
    out["release"] = release
    out["profile_class"] = profile_class(out["pert_type"])
    for col in INSTANCE_COLUMNS:
        if col not in ("pert_dose", "pert_time"):
            out[col] = out[col].astype("string")
    return out[INSTANCE_COLUMNS]


def instance_schema_drift(
    raw: pd.DataFrame, instances: pd.DataFrame, *, path="inst_info"
) -> list[str]:
    """Warnings for the optional canonical columns (:data:`OPTIONAL_INSTANCE`) that an
    ``inst_info``-like table ``raw`` lacks, or has with no value in any row of its canonical
    ``instances`` (e.g. a dose that is not a number anywhere), with the columns it has: a
    renamed column (``pert_dose`` as ``dose``) otherwise becomes missing in silence."""
    absent, empty = [], []
    for group in OPTIONAL_INSTANCE:
        found = {
            c: n for c in group if (n := next((a for a in _INSTANCE_ALIASES[c] if a in raw), None))
        }
        if not found:
            names = sorted({a for c in group for a in _INSTANCE_ALIASES[c]})
            absent.append(f"{' or '.join(group)} (accepted names: {', '.join(names)})")
        elif len(raw) and all(
            raw[n].isna().all() or instances[c].isna().all() for c, n in found.items()
        ):
            empty.append(" or ".join(f"{c} (as {n!r})" for c, n in found.items()))
    found = f"columns found: {preview_ids(raw.columns, 30)}"
    out = []
    if absent:
        out.append(f"{path}: instances: no column for {'; '.join(absent)}; {found}")
    if empty:
        out.append(
            f"{path}: instances: no value in every row (missing or not a number) for "
            f"{', '.join(empty)}; {found}"
        )
    return out


def canonical_genes(
    df: pd.DataFrame,
    *,
    path="gene_info",
    n_landmarks: int = N_LANDMARKS,
    reference_landmarks: Collection[str] | None = None,
    reference: str = "the reference",
) -> pd.DataFrame:
    """Canonical ``genes``: landmarks first in ascending numeric gene id (``landmark_index``
    0..977, the column order of every profile vector in the lake), then the other genes.

    A release-independent order, so profiles from different releases line up. When the
    table does not mark ``n_landmarks`` landmarks, the error names a few genes: those of
    ``reference_landmarks`` (the landmarks of ``reference``, e.g. a release already in the
    lake) not marked here and those marked here but not there, and genes whose landmark
    flag is missing. ``is_bing`` marks the landmarks and the well-inferred genes (GEO's
    ``pr_is_bing``; CMap LINCS 2020's ``feature_space`` ``landmark`` or ``best inferred``),
    the gene space of gene-set queries; null when the table does not say.
    """
    _require(df, _GENE_ALIASES, ("gene_id",), path, "genes")
    out = _rename(df, _GENE_ALIASES)
    if "pr_is_lm" in df.columns:
        raw_flag = df["pr_is_lm"].astype("string").str.strip()
        flag = raw_flag.isin(["1", "1.0"])
    elif "pr_is_lmark" in df.columns:
        raw_flag = df["pr_is_lmark"].astype("string").str.strip()
        flag = raw_flag.isin(["Y", "1", "True"])
    elif "feature_space" in df.columns:
        raw_flag = df["feature_space"].astype("string").str.strip()
        flag = raw_flag.eq("landmark")
    else:
        raise L1000InputError(
            path,
            "genes: no pr_is_lm, pr_is_lmark or feature_space column to identify landmark genes",
        )
    out["is_landmark"] = flag.fillna(False).astype(bool).to_numpy()
    out["is_bing"] = _bing_flags(df, out["is_landmark"])
    out["gene_id"] = out["gene_id"].astype("string").str.strip()
    dup = out["gene_id"][out["gene_id"].duplicated()].unique()
    if len(dup):
        raise L1000InputError(path, f"genes: duplicate gene ids {preview_ids(dup)}")
    n_lm = int(out["is_landmark"].sum())
    if n_lm != n_landmarks:
        raise L1000InputError(
            path,
            f"genes: {n_lm} landmark genes marked, expected {n_landmarks}"
            + _landmark_differences(out, raw_flag.isna(), reference_landmarks, reference),
        )
    numeric = pd.to_numeric(out["gene_id"], errors="coerce")
    out = out.assign(_num=numeric).sort_values(
        ["is_landmark", "_num", "gene_id"], ascending=[False, True, True], kind="stable"
    )
    out["landmark_index"] = pd.array(list(range(n_lm)) + [pd.NA] * (len(out) - n_lm), dtype="Int32")
    for col in ("symbol", "title"):
        out[col] = out[col].astype("string")
    return out[GENE_COLUMNS].reset_index(drop=True)


def _landmark_differences(
    genes: pd.DataFrame,
    no_flag: pd.Series,
    reference_landmarks: Collection[str] | None,
    reference: str,
) -> str:
    """``; ...``: the genes behind a wrong landmark count, with their symbols."""
    symbols = dict(zip(genes["gene_id"], genes["symbol"]))

    def named(ids) -> str:
        shown = [f"{i!r} ({symbols[i]})" if pd.notna(symbols.get(i)) else repr(i) for i in ids]
        more = len(shown) - 5
        return ", ".join(shown[:5]) + (f" (and {more} more)" if more > 0 else "")

    parts = []
    marked = set(genes.loc[genes["is_landmark"], "gene_id"])
    if reference_landmarks is not None:
        wanted = [str(g) for g in reference_landmarks]
        missing = [g for g in wanted if g not in marked]
        extra = sorted(marked - set(wanted))
        if missing:
            parts.append(f"landmarks of {reference} not marked here: {named(missing)}")
        if extra:
            parts.append(f"marked here, not landmarks of {reference}: {named(extra)}")
    unflagged = genes.loc[no_flag.fillna(True).to_numpy(), "gene_id"].tolist()
    if unflagged:
        parts.append(f"{len(unflagged)} gene(s) with no landmark flag: {named(unflagged)}")
    if not parts:
        parts.append("no landmark list to compare with: check the table's landmark flag")
    return "; " + "; ".join(parts)


def _bing_flags(df: pd.DataFrame, is_landmark: pd.Series) -> pd.arrays.BooleanArray:
    """Per row: landmark or best inferred (BING); NA where the table has no such column."""
    if "pr_is_bing" in df.columns:
        flag = df["pr_is_bing"].astype("string").str.strip().isin(["1", "1.0", "True", "Y"])
    elif "feature_space" in df.columns:
        space = df["feature_space"].astype("string").str.strip()
        flag = space.isin(["landmark", "best inferred"])
    else:
        return pd.array([pd.NA] * len(df), dtype="boolean")
    return pd.array(flag.fillna(False).to_numpy() | is_landmark.to_numpy(), dtype="boolean")


def canonical_perturbagens(df: pd.DataFrame, release: str, *, path="pert_info") -> pd.DataFrame:
    _require(df, _PERT_ALIASES, ("pert_id",), path, "perturbagens")
    out = _rename(df, _PERT_ALIASES).astype("string")
    out["release"] = release
    # Beta's compoundinfo has one row per (compound, target): keep one row per pert_id,
    # joining the distinct annotations.
    if out["pert_id"].duplicated().any():
        out = (
            out.groupby("pert_id", sort=False, dropna=False)
            .agg(lambda s: "|".join(dict.fromkeys(s.dropna())) or pd.NA)
            .reset_index()
            .astype("string")
        )
        out["release"] = release
    return out[PERT_COLUMNS]


def perturbagens_from_instances(instances: pd.DataFrame) -> pd.DataFrame:
    """Perturbagens seen in ``instances`` (for releases without a ``pert_info`` table)."""
    out = instances.drop_duplicates("pert_id")[["pert_id", "pert_iname", "pert_type", "release"]]
    out = out.assign(moa=pd.NA, target=pd.NA).astype("string")
    return out[PERT_COLUMNS].reset_index(drop=True)


def canonical_cell_lines(df: pd.DataFrame, release: str, *, path="cell_info") -> pd.DataFrame:
    _require(df, _CELL_ALIASES, ("cell_id",), path, "cell_lines")
    out = _rename(df, _CELL_ALIASES).astype("string").drop_duplicates("cell_id")
    out["release"] = release
    return out[CELL_COLUMNS].reset_index(drop=True)


def cell_lines_from_instances(instances: pd.DataFrame) -> pd.DataFrame:
    out = instances.drop_duplicates("cell_id")[["cell_id", "release"]]
    out = out.assign(primary_site=pd.NA, subtype=pd.NA).astype("string")
    return out[CELL_COLUMNS].reset_index(drop=True)
