"""The canonical metadata schema every release is mapped onto.

Each release's metadata columns are renamed onto the canonical schema below; ``-666`` (and
empty) means missing.

Canonical tables (one Parquet file each per release):

``instances``  inst_id, pert_id, pert_iname, pert_type, cell_id, pert_dose, pert_dose_unit,
               pert_time, pert_time_unit, rna_plate, det_plate, release, profile_class
``genes``      gene_id, symbol, title, is_landmark, landmark_index
``perturbagens`` pert_id, pert_iname, pert_type, moa, target, release
``cell_lines`` cell_id, primary_site, subtype, release
"""

from __future__ import annotations

from collections.abc import Mapping

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
GENE_COLUMNS = ["gene_id", "symbol", "title", "is_landmark", "landmark_index"]
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


def canonical_genes(
    df: pd.DataFrame, *, path="gene_info", n_landmarks: int = N_LANDMARKS
) -> pd.DataFrame:
    """Canonical ``genes``: landmarks first in ascending numeric gene id (``landmark_index``
    0..977, the column order of every profile vector in the lake), then the other genes.

    A release-independent order, so profiles from different releases line up.
    """
    _require(df, _GENE_ALIASES, ("gene_id",), path, "genes")
    out = _rename(df, _GENE_ALIASES)
    if "pr_is_lm" in df.columns:
        flag = df["pr_is_lm"].astype("string").str.strip().isin(["1", "1.0"])
    elif "pr_is_lmark" in df.columns:
        flag = df["pr_is_lmark"].astype("string").str.strip().isin(["Y", "1", "True"])
    elif "feature_space" in df.columns:
        flag = df["feature_space"].astype("string").str.strip().eq("landmark")
    else:
        raise L1000InputError(
            path,
            "genes: no pr_is_lm, pr_is_lmark or feature_space column to identify landmark genes",
        )
    out["is_landmark"] = flag.fillna(False).astype(bool).to_numpy()
    out["gene_id"] = out["gene_id"].astype("string").str.strip()
    dup = out["gene_id"][out["gene_id"].duplicated()].unique()
    if len(dup):
        raise L1000InputError(path, f"genes: duplicate gene ids {preview_ids(dup)}")
    n_lm = int(out["is_landmark"].sum())
    if n_lm != n_landmarks:
        raise L1000InputError(path, f"genes: {n_lm} landmark genes marked, expected {n_landmarks}")
    numeric = pd.to_numeric(out["gene_id"], errors="coerce")
    out = out.assign(_num=numeric).sort_values(
        ["is_landmark", "_num", "gene_id"], ascending=[False, True, True], kind="stable"
    )
    out["landmark_index"] = pd.array(list(range(n_lm)) + [pd.NA] * (len(out) - n_lm), dtype="Int32")
    for col in ("symbol", "title"):
        out[col] = out[col].astype("string")
    return out[GENE_COLUMNS].reset_index(drop=True)


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
