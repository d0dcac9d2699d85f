"""Do a release's matrix and metadata describe the same profiles and genes?

:func:`check_release` checks a release's files as written; :func:`reconcile` aligns opened
metadata with the matrix: ``strict`` raises on any disagreement, ``skip`` drops the
offending ids and reports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.formats.gctx import (
    GctxReader,
)
from l1000_assets.core.formats.info_tables import landmark_gene_ids, read_info_table
from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.releases.local import (
    LocalRelease,
    ReleaseData,
)

STRICT, SKIP = "strict", "skip"


@dataclass(frozen=True)
class Reconciliation:
    """Metadata aligned to the matrix and what was dropped (only in ``skip`` mode)."""

    instances: pd.DataFrame  # one row per matrix column that has metadata, with `position`
    landmark_rows: np.ndarray  # matrix row positions of the 978 landmarks, canonical order
    landmark_gene_ids: list[str]
    n_matrix_columns: int
    profiles_without_metadata: list[str]
    metadata_without_profile: list[str]
    duplicate_inst_ids: list[str]

    def report(self) -> dict[str, object]:
        return {
            "n_matrix_columns": self.n_matrix_columns,
            "n_profiles_without_metadata": len(self.profiles_without_metadata),
            "n_metadata_rows_without_profile": len(self.metadata_without_profile),
            "n_duplicate_inst_ids": len(self.duplicate_inst_ids),
            "examples_without_metadata": preview_ids(self.profiles_without_metadata),
            "examples_without_profile": preview_ids(self.metadata_without_profile),
        }


def reconcile(release: ReleaseData, *, on_bad_input: str = STRICT) -> Reconciliation:
    """Align metadata with the matrix; raise (``strict``) or drop and report (``skip``)."""
    if on_bad_input not in (STRICT, SKIP):
        raise ValueError(f"on_bad_input must be {STRICT!r} or {SKIP!r}")
    inst = release.instances
    inst_path = release.files.get("inst_info", release.matrix_path)
    dup = inst["inst_id"][inst["inst_id"].duplicated()].unique().tolist()
    if dup and on_bad_input == STRICT:
        raise L1000InputError(inst_path, f"duplicate inst_id value(s): {preview_ids(dup)}")
    inst = inst.drop_duplicates("inst_id")
    with release.open_matrix() as matrix:
        col_ids = pd.Index(matrix.col_ids.astype(str))
        dup_cols = col_ids[col_ids.duplicated()].unique()
        if len(dup_cols):
            raise L1000InputError(
                release.matrix_path, f"duplicate column (sample) ids: {preview_ids(dup_cols)}"
            )
        landmark_ids = release.genes.loc[release.genes["is_landmark"], "gene_id"].tolist()
        landmark_rows = matrix.row_positions(landmark_ids)  # names missing landmarks
    meta_ids = pd.Index(inst["inst_id"].astype(str))
    no_meta = col_ids.difference(meta_ids, sort=False).tolist()
    no_profile = meta_ids.difference(col_ids, sort=False).tolist()
    if on_bad_input == STRICT:
        if no_meta:
            raise L1000InputError(
                release.matrix_path,
                f"{len(no_meta)} profile(s) have no row in "
                f"{Path(inst_path).name}: {preview_ids(no_meta)}",
            )
        if no_profile:
            raise L1000InputError(
                inst_path,
                f"{len(no_profile)} inst_id(s) have no column in "
                f"{release.matrix_path.name}: {preview_ids(no_profile)}",
            )
    position = pd.Series(np.arange(len(col_ids)), index=col_ids)
    aligned = inst[inst["inst_id"].isin(col_ids)].copy()
    aligned["position"] = position.loc[aligned["inst_id"].astype(str)].to_numpy()
    aligned = aligned.sort_values("position").reset_index(drop=True)
    return Reconciliation(
        aligned, landmark_rows, landmark_ids, len(col_ids), no_meta, no_profile, dup
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
            f"{preview_ids(no_meta)}",
        )
    no_profile = inst_ids.difference(col_ids)
    if len(no_profile):
        raise L1000InputError(
            release.inst_info,
            f"{len(no_profile)} inst_id(s) have no column in {release.level4.name}: "
            f"{preview_ids(no_profile)}",
        )
    gene_ids = pd.Index(genes["pr_gene_id"].astype(str))
    unknown_genes = row_ids.difference(gene_ids)
    if len(unknown_genes):
        raise L1000InputError(
            release.level4,
            f"{len(unknown_genes)} gene id(s) have no row in {release.gene_info.name}: "
            f"{preview_ids(unknown_genes)}",
        )
    landmarks = landmark_gene_ids(genes, path=release.gene_info)
    missing_lm = pd.Index(landmarks).difference(row_ids)
    if len(landmarks) != N_LANDMARKS or len(missing_lm):
        raise L1000InputError(
            release.level4,
            f"expected {N_LANDMARKS} landmark genes, gene_info marks {len(landmarks)} and "
            f"{len(missing_lm)} are missing from the matrix: {preview_ids(missing_lm)}",
        )
    return {"n_profiles": len(col_ids), "n_genes": len(row_ids), "n_landmarks": len(landmarks)}
