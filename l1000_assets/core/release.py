"""A release on local disk in GEO layout: find its files and check they agree.

GEO GSE92742 names its files ``<prefix>_Level4_ZSPCINF_mlr12k_n{N}x12328.gctx`` and
``<prefix>_{inst,gene,pert,cell}_info.txt`` (``.gz`` on GEO); the synthetic release uses
the same layout. :func:`find_release_files` locates them in a directory and
:func:`check_release` verifies that the matrix and the metadata describe the same ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.gctx import GctxReader
from l1000_assets.core.metadata import landmark_gene_ids, read_info_table

LEVEL4_PATTERN = re.compile(r"Level4_.*\.gctx$", re.IGNORECASE)
N_LANDMARKS = 978


@dataclass(frozen=True)
class LocalRelease:
    """The files of one release in a directory (metadata tables may be ``.gz``)."""

    root: Path
    level4: Path
    inst_info: Path
    gene_info: Path
    pert_info: Path | None
    cell_info: Path | None


def _one(root: Path, kind: str, required: bool) -> Path | None:
    found = sorted(p for p in root.iterdir()
                   if re.search(rf"{kind}([_.][A-Za-z0-9.-]*)?\.txt(\.gz)?$", p.name) and not p.name.startswith("."))
    if len(found) > 1:
        raise L1000InputError(root, f"several {kind} files: {preview_ids(p.name for p in found)}")
    if not found:
        if required:
            raise L1000InputError(root, f"no {kind} file (expected a name ending in {kind}.txt)")
        return None
    return found[0]


def find_release_files(root: str | Path) -> LocalRelease:
    """Locate a release's level-4 GCTX and metadata tables in ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise L1000InputError(root, "release directory not found")
    level4 = sorted(p for p in root.iterdir() if LEVEL4_PATTERN.search(p.name)
                    and not p.name.startswith("."))
    if len(level4) != 1:
        raise L1000InputError(
            root, f"expected one level-4 GCTX (…Level4_….gctx), found {len(level4)}"
            + (f": {preview_ids(p.name for p in level4)}" if level4 else ""))
    return LocalRelease(
        root=root, level4=level4[0],
        inst_info=_one(root, "inst_info", True), gene_info=_one(root, "gene_info", True),
        pert_info=_one(root, "pert_info", False), cell_info=_one(root, "cell_info", False),
    )


def check_release(release: LocalRelease, *, inst_id_column: str = "inst_id") -> dict[str, int]:
    """Check that matrix ids and metadata ids agree; return counts.

    Raises
    ------
    L1000InputError
        Naming the file and a few offending ids when a matrix column has no ``inst_info``
        row (or the reverse), a matrix row has no ``gene_info`` row, ids repeat, or the
        landmark genes are not all present.
    """
    genes = read_info_table(release.gene_info, required=["pr_gene_id"], id_column="pr_gene_id")
    inst = read_info_table(release.inst_info, required=[inst_id_column], id_column=inst_id_column)
    with GctxReader(release.level4) as reader:
        col_ids = pd.Index(reader.col_ids)
        row_ids = pd.Index(reader.row_ids)
    for ids, what in ((col_ids, "column (sample)"), (row_ids, "row (gene)")):
        dup = ids[ids.duplicated()].unique()
        if len(dup):
            raise L1000InputError(release.level4, f"duplicate {what} ids: {preview_ids(dup)}")
    inst_ids = pd.Index(inst[inst_id_column].astype(str))
    no_meta = col_ids.difference(inst_ids)
    if len(no_meta):
        raise L1000InputError(
            release.level4,
            f"{len(no_meta)} sample id(s) have no row in {release.inst_info.name}: "
            f"{preview_ids(no_meta)}")
    no_profile = inst_ids.difference(col_ids)
    if len(no_profile):
        raise L1000InputError(
            release.inst_info,
            f"{len(no_profile)} inst_id(s) have no column in {release.level4.name}: "
            f"{preview_ids(no_profile)}")
    gene_ids = pd.Index(genes["pr_gene_id"].astype(str))
    unknown_genes = row_ids.difference(gene_ids)
    if len(unknown_genes):
        raise L1000InputError(
            release.level4,
            f"{len(unknown_genes)} gene id(s) have no row in {release.gene_info.name}: "
            f"{preview_ids(unknown_genes)}")
    landmarks = landmark_gene_ids(genes, path=release.gene_info)
    missing_lm = pd.Index(landmarks).difference(row_ids)
    if len(landmarks) != N_LANDMARKS or len(missing_lm):
        raise L1000InputError(
            release.level4,
            f"expected {N_LANDMARKS} landmark genes, gene_info marks {len(landmarks)} and "
            f"{len(missing_lm)} are missing from the matrix: {preview_ids(missing_lm)}")
    return {"n_profiles": len(col_ids), "n_genes": len(row_ids), "n_landmarks": len(landmarks)}
