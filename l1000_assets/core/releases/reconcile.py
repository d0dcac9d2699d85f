"""Do a release's matrix and metadata describe the same profiles and genes?

:func:`match_ids` is the one matching of matrix columns to metadata rows by id, on Arrow
arrays: ``strict`` raises on any disagreement, ``skip`` drops the offending ids and reports
them. Its callers: :func:`reconcile` aligns an opened release's metadata with its matrix
(``release_metadata``); :func:`check_release` checks a release's files as written (always
strict, with the genes too); the lake ingest matches the canonical metadata tables
(:mod:`~l1000_assets.core.lake.ingest`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.formats.gctx import GctxReader
from l1000_assets.core.formats.info_tables import landmark_gene_ids, read_info_table
from l1000_assets.core.releases.local import LocalRelease, ReleaseData
from l1000_assets.core.releases.schema import N_LANDMARKS

STRICT, SKIP = "strict", "skip"


def check_on_bad_input(on_bad_input: str) -> None:
    """Raise ``ValueError`` unless ``on_bad_input`` is ``strict`` or ``skip``."""
    if on_bad_input not in (STRICT, SKIP):
        raise ValueError(f"on_bad_input must be {STRICT!r} or {SKIP!r}")


def _preview(ids: pa.Array, limit: int = 5) -> str:
    """:func:`preview_ids` of an Arrow array, converting only the ids shown."""
    more = len(ids) - limit
    return preview_ids(ids.slice(0, limit).to_pylist(), limit) + (
        f" (and {more} more)" if more > 0 else ""
    )


def _duplicates(ids: pa.Array) -> pa.Array:
    """The ids that occur more than once, each once, in order of first occurrence."""
    counts = pa.table({"id": ids}).group_by("id", use_threads=False).aggregate([("id", "count")])
    return counts.filter(pc.greater(counts["id_count"], 1)).column("id").combine_chunks()


def _one_array(ids: pa.Array | pa.ChunkedArray) -> pa.Array:
    return ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids


@dataclass(frozen=True)
class IdMatch:
    """Matrix columns matched to metadata rows by id (:func:`match_ids`).

    ``rows[i]`` is the metadata row of matrix column ``positions[i]``, ascending by
    position; the three id arrays are what disagreed (non-empty only in ``skip`` mode).
    """

    rows: NDArray[np.int32]
    positions: NDArray[np.int64]
    n_matrix_columns: int
    profiles_without_metadata: pa.Array
    metadata_without_profile: pa.Array
    duplicate_inst_ids: pa.Array

    def report(self) -> dict[str, object]:
        """Counts and a few examples of what was dropped, for asset metadata."""
        return {
            "n_matrix_columns": self.n_matrix_columns,
            "n_profiles_without_metadata": len(self.profiles_without_metadata),
            "n_metadata_rows_without_profile": len(self.metadata_without_profile),
            "n_duplicate_inst_ids": len(self.duplicate_inst_ids),
            "examples_without_metadata": _preview(self.profiles_without_metadata),
            "examples_without_profile": _preview(self.metadata_without_profile),
        }


def match_ids(
    inst_ids: pa.Array | pa.ChunkedArray,
    col_ids: pa.Array | pa.ChunkedArray,
    *,
    on_bad_input: str = STRICT,
    matrix_path: str | Path,
    metadata_path: str | Path,
    columns_named: str = "profile(s)",
) -> IdMatch:
    """Match every matrix column to the metadata row of its id.

    Parameters
    ----------
    inst_ids
        The metadata's ``inst_id`` column (``string``; chunks are combined, a copy).
    col_ids
        The matrix column (sample) ids (``string``; likewise).
    on_bad_input
        ``strict`` raises on a repeated ``inst_id``, a matrix column without a metadata row
        or a metadata row without a matrix column; ``skip`` drops those ids (keeping the
        first of repeated ``inst_id`` rows) and lists them in the result. A repeated
        matrix column id always raises.
    matrix_path, metadata_path
        The files ``col_ids`` and ``inst_ids`` come from, named in errors.
    columns_named
        What the error for matrix columns without metadata calls them.

    Raises
    ------
    L1000InputError
        Naming the file and a few ids, for the disagreements above.
    """
    check_on_bad_input(on_bad_input)
    matrix_path, metadata_path = Path(matrix_path), Path(metadata_path)
    inst_ids, col_ids = _one_array(inst_ids), _one_array(col_ids)
    # One hash join: each matrix column gets the first metadata row of its id. Everything
    # else follows from how often each row was hit, so the common case (no disagreement)
    # costs nothing more.
    row_of_col = pc.index_in(col_ids, value_set=inst_ids)
    has_meta = row_of_col.is_valid().to_numpy(zero_copy_only=False)
    rows = row_of_col.drop_null().to_numpy()
    hits = np.bincount(rows, minlength=len(inst_ids))
    no_meta = col_ids.filter(pa.array(~has_meta))
    dup_cols = pa.concat_arrays([inst_ids.take(np.flatnonzero(hits > 1)), _duplicates(no_meta)])
    # A row that no column hit has an id missing from the matrix or repeats an earlier row.
    unhit = inst_ids.take(np.flatnonzero(hits == 0))
    dup_inst = no_profile = unhit
    if len(unhit):
        dup_inst = _duplicates(inst_ids)
        no_profile = unhit.filter(pc.invert(pc.is_in(unhit, value_set=col_ids)))
        if len(dup_inst):  # a repeated id without a column: count the id once
            no_profile = pc.unique(no_profile)
    if len(dup_inst) and on_bad_input == STRICT:
        raise L1000InputError(metadata_path, f"duplicate inst_id value(s): {_preview(dup_inst)}")
    if len(dup_cols):
        raise L1000InputError(matrix_path, f"duplicate column (sample) ids: {_preview(dup_cols)}")
    if on_bad_input == STRICT:
        if len(no_meta):
            raise L1000InputError(
                matrix_path,
                f"{len(no_meta)} {columns_named} have no row in {metadata_path.name}: "
                f"{_preview(no_meta)}",
            )
        if len(no_profile):
            raise L1000InputError(
                metadata_path,
                f"{len(no_profile)} inst_id(s) have no column in "
                f"{matrix_path.name}: {_preview(no_profile)}",
            )
    return IdMatch(rows, np.flatnonzero(has_meta), len(col_ids), no_meta, no_profile, dup_inst)


@dataclass(frozen=True)
class Reconciliation:
    """Metadata aligned to the matrix and what was dropped (only in ``skip`` mode)."""

    instances: pd.DataFrame  # one row per matrix column that has metadata, with `position`
    landmark_rows: NDArray[np.int64]  # matrix row positions of the 978 landmarks, canonical order
    landmark_gene_ids: list[str]
    match: IdMatch

    @property
    def n_matrix_columns(self) -> int:
        return self.match.n_matrix_columns

    @property
    def profiles_without_metadata(self) -> list[str]:
        return self.match.profiles_without_metadata.to_pylist()

    @property
    def metadata_without_profile(self) -> list[str]:
        return self.match.metadata_without_profile.to_pylist()

    @property
    def duplicate_inst_ids(self) -> list[str]:
        return self.match.duplicate_inst_ids.to_pylist()

    def report(self) -> dict[str, object]:
        return self.match.report()


def reconcile(release: ReleaseData, *, on_bad_input: str = STRICT) -> Reconciliation:
    """Align metadata with the matrix; raise (``strict``) or drop and report (``skip``)."""
    check_on_bad_input(on_bad_input)
    inst = release.instances
    landmark_ids = release.genes.loc[release.genes["is_landmark"], "gene_id"].tolist()
    with release.open_matrix() as matrix:
        landmark_rows = matrix.row_positions(landmark_ids)  # names missing landmarks
        col_ids = matrix.col_id_array()
    match = match_ids(
        pa.array(inst["inst_id"], pa.string()),
        col_ids,
        on_bad_input=on_bad_input,
        matrix_path=release.matrix_path,
        metadata_path=release.files.get("inst_info", release.matrix_path),
    )
    aligned = inst.iloc[match.rows].assign(position=match.positions).reset_index(drop=True)
    return Reconciliation(aligned, landmark_rows, landmark_ids, match)


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
        col_ids = reader.col_id_array()
        row_ids = pd.Index(reader.row_ids)
    dup = row_ids[row_ids.duplicated()].unique()
    if len(dup):
        raise L1000InputError(release.level4, f"duplicate row (gene) ids: {preview_ids(dup)}")
    match_ids(
        pa.array(inst[inst_id_column], pa.string()),
        col_ids,
        matrix_path=release.level4,
        metadata_path=release.inst_info,
        columns_named="sample id(s)",
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
