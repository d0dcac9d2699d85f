"""Known LINCS releases and the mapping of their metadata onto one canonical schema.

Three public releases are registered with their real file names and URLs (GEO GSE92742,
GEO GSE70138, CMap LINCS 2020 "beta"); any other release is a local directory of files a
user already has (the synthetic release among them). Each release's metadata columns are
renamed onto the canonical schema below; ``-666`` (and empty) means missing.

Canonical tables (one Parquet file each per release):

``instances``  inst_id, pert_id, pert_iname, pert_type, cell_id, pert_dose, pert_dose_unit,
               pert_time, pert_time_unit, rna_plate, det_plate, release, profile_class
``genes``      gene_id, symbol, title, is_landmark, landmark_index
``perturbagens`` pert_id, pert_iname, pert_type, moa, target, release
``cell_lines`` cell_id, primary_site, subtype, release
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.metadata import CONTROL_PERT_TYPES, GENETIC_PERT_TYPES

INSTANCE_COLUMNS = ["inst_id", "pert_id", "pert_iname", "pert_type", "cell_id", "pert_dose",
                    "pert_dose_unit", "pert_time", "pert_time_unit", "rna_plate", "det_plate",
                    "release", "profile_class"]
GENE_COLUMNS = ["gene_id", "symbol", "title", "is_landmark", "landmark_index"]
PERT_COLUMNS = ["pert_id", "pert_iname", "pert_type", "moa", "target", "release"]
CELL_COLUMNS = ["cell_id", "primary_site", "subtype", "release"]

#: Release names become Dagster partition keys and directory names.
RELEASE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

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


@dataclass(frozen=True)
class ReleaseSource:
    """Where a release comes from and what its files are called.

    ``files`` maps a role (``level4``, ``inst_info``, ``gene_info``, ``pert_info``,
    ``cell_info``, ``checksums``) to the file name at ``base_url`` (HTTP sources) or in
    ``path`` (local sources; roles left out are discovered by name).
    """

    name: str
    kind: str                                  # "http" or "local"
    description: str = ""
    base_url: str | None = None
    path: str | None = None
    files: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not RELEASE_NAME.match(self.name):
            raise ValueError(f"invalid release name {self.name!r}: letters, digits, '_', '.', '-'")
        if self.kind not in ("http", "local"):
            raise ValueError(f"release {self.name}: kind must be 'http' or 'local'")

    def url(self, role: str) -> str:
        return f"{self.base_url.rstrip('/')}/{self.files[role]}"


GEO = "https://ftp.ncbi.nlm.nih.gov/geo/series"
KNOWN_RELEASES: dict[str, ReleaseSource] = {
    "GSE92742": ReleaseSource(
        name="GSE92742", kind="http",
        description="GEO GSE92742, LINCS Phase I (Broad), 1,319,138 level-4 profiles",
        base_url=f"{GEO}/GSE92nnn/GSE92742/suppl",
        files={
            "level4": "GSE92742_Broad_LINCS_Level4_ZSPCINF_mlr12k_n1319138x12328.gctx.gz",
            "inst_info": "GSE92742_Broad_LINCS_inst_info.txt.gz",
            "gene_info": "GSE92742_Broad_LINCS_gene_info.txt.gz",
            "pert_info": "GSE92742_Broad_LINCS_pert_info.txt.gz",
            "cell_info": "GSE92742_Broad_LINCS_cell_info.txt.gz",
            "checksums": "GSE92742_SHA512SUMS.txt.gz",
        },
    ),
    "GSE70138": ReleaseSource(
        name="GSE70138", kind="http",
        description="GEO GSE70138, LINCS Phase II (Broad), 345,976 level-4 profiles",
        base_url=f"{GEO}/GSE70nnn/GSE70138/suppl",
        files={
            "level4": "GSE70138_Broad_LINCS_Level4_ZSPCINF_mlr12k_n345976x12328_2017-03-06.gctx.gz",
            "inst_info": "GSE70138_Broad_LINCS_inst_info_2017-03-06.txt.gz",
            "gene_info": "GSE70138_Broad_LINCS_gene_info_2017-03-06.txt.gz",
            "pert_info": "GSE70138_Broad_LINCS_pert_info_2017-03-06.txt.gz",
            "cell_info": "GSE70138_Broad_LINCS_cell_info_2017-04-28.txt.gz",
        },
    ),
    "LINCS2020": ReleaseSource(
        name="LINCS2020", kind="http",
        description="CMap LINCS 2020 (beta), compound level-4 profiles",
        base_url="https://s3.amazonaws.com/macchiato.clue.io/builds/LINCS2020",
        files={
            "level4": "level4_beta_trt_cp_n1805898x12328.gctx",
            "inst_info": "instinfo_beta.txt",
            "gene_info": "geneinfo_beta.txt",
            "pert_info": "compoundinfo_beta.txt",
            "cell_info": "cellinfo_beta.txt",
        },
    ),
}

#: Date stamps in GEO file names (``..._2017-03-06.txt.gz``): a version signal.
DATED_NAME = re.compile(r"_(\d{4}-\d{2}-\d{2})\.")


def _rename(df: pd.DataFrame, aliases: Mapping[str, tuple[str, ...]]) -> pd.DataFrame:
    out = {}
    for canonical, names in aliases.items():
        found = next((n for n in names if n in df.columns), None)
        out[canonical] = df[found] if found is not None else pd.Series(pd.NA, index=df.index,
                                                                        dtype="string")
    return pd.DataFrame(out)


def _require(df: pd.DataFrame, aliases, required, path, table: str) -> None:
    missing = [c for c in required if not any(a in df.columns for a in aliases[c])]
    if missing:
        raise L1000InputError(
            path, f"{table}: no column for {missing} (accepted names: "
                  f"{ {c: aliases[c] for c in missing} }); columns found: "
                  f"{preview_ids(df.columns, 12)}")


def profile_class(pert_type: pd.Series) -> pd.Series:
    """control / compound / genetic / other, from ``pert_type``."""
    pt = pert_type.astype("string")
    out = np.select(
        [pt.isin(CONTROL_PERT_TYPES).fillna(False).to_numpy(),
         (pt == "trt_cp").fillna(False).to_numpy(),
         pt.isin(GENETIC_PERT_TYPES).fillna(False).to_numpy()],
        ["control", "compound", "genetic"], default="other")
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


def canonical_genes(df: pd.DataFrame, *, path="gene_info", n_landmarks: int = 978) -> pd.DataFrame:
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
        raise L1000InputError(path, "genes: no pr_is_lm, pr_is_lmark or feature_space column "
                                    "to identify landmark genes")
    out["is_landmark"] = flag.fillna(False).astype(bool).to_numpy()
    out["gene_id"] = out["gene_id"].astype("string").str.strip()
    dup = out["gene_id"][out["gene_id"].duplicated()].unique()
    if len(dup):
        raise L1000InputError(path, f"genes: duplicate gene ids {preview_ids(dup)}")
    n_lm = int(out["is_landmark"].sum())
    if n_lm != n_landmarks:
        raise L1000InputError(path, f"genes: {n_lm} landmark genes marked, expected {n_landmarks}")
    numeric = pd.to_numeric(out["gene_id"], errors="coerce")
    out = out.assign(_num=numeric).sort_values(["is_landmark", "_num", "gene_id"],
                                               ascending=[False, True, True], kind="stable")
    out["landmark_index"] = pd.array(
        list(range(n_lm)) + [pd.NA] * (len(out) - n_lm), dtype="Int32")
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
        out = (out.groupby("pert_id", sort=False, dropna=False)
               .agg(lambda s: "|".join(dict.fromkeys(s.dropna())) or pd.NA)
               .reset_index().astype("string"))
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
