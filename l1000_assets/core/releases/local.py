"""A release on local disk: find its files and open it for ingest.

GEO GSE92742 names its files ``<prefix>_Level4_ZSPCINF_mlr12k_n{N}x12328.gctx`` and
``<prefix>_{inst,gene,pert,cell}_info.txt`` (``.gz`` on GEO); the synthetic release uses
the same layout. :func:`find_release_files` locates them in a directory;
:func:`open_release` reads a release directory (GCTX or GCT text matrix plus metadata
tables, or metadata embedded in the GCT) into canonical metadata and a matrix source;
:func:`find_matrix` finds only the matrix.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.formats.info_tables import read_info_table
from l1000_assets.core.formats.matrix import MatrixReader, open_matrix
from l1000_assets.core.releases.schema import (
    canonical_cell_lines,
    canonical_genes,
    canonical_instances,
    canonical_perturbagens,
    cell_lines_from_instances,
    instance_schema_drift,
    perturbagens_from_instances,
)

LEVEL4_PATTERN = re.compile(r"Level4_.*\.gctx$", re.IGNORECASE)


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
    found = sorted(
        p
        for p in root.iterdir()
        if re.search(rf"{kind}([_.][A-Za-z0-9.-]*)?\.txt(\.gz)?$", p.name)
        and not p.name.startswith(".")
    )
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
    level4 = sorted(
        p for p in root.iterdir() if LEVEL4_PATTERN.search(p.name) and not p.name.startswith(".")
    )
    if len(level4) != 1:
        raise L1000InputError(
            root,
            f"expected one level-4 GCTX (…Level4_….gctx), found {len(level4)}"
            + (f": {preview_ids(p.name for p in level4)}" if level4 else ""),
        )
    return LocalRelease(
        root=root,
        level4=level4[0],
        inst_info=_one(root, "inst_info", True),
        gene_info=_one(root, "gene_info", True),
        pert_info=_one(root, "pert_info", False),
        cell_info=_one(root, "cell_info", False),
    )


@dataclass
class ReleaseData:
    """A release opened for ingest: canonical metadata plus a matrix to stream.
    ``schema_warnings``: optional canonical columns the metadata lacks or leaves empty
    (:func:`~l1000_assets.core.releases.schema.instance_schema_drift`)."""

    name: str
    matrix_path: Path
    instances: pd.DataFrame
    genes: pd.DataFrame
    perturbagens: pd.DataFrame
    cell_lines: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    schema_warnings: list[str] = field(default_factory=list)

    def open_matrix(self) -> MatrixReader:
        """The level-4 matrix, its rows keyed by gene id (:func:`open_matrix`)."""
        return open_matrix(self.matrix_path)


def _find_gct(root: Path) -> Path | None:
    gcts = sorted(p for p in root.iterdir() if p.suffix == ".gct" and not p.name.startswith("."))
    if len(gcts) > 1:
        raise L1000InputError(root, f"several GCT files: {preview_ids(p.name for p in gcts)}")
    return gcts[0] if gcts else None


def open_release(
    name: str,
    root: str | Path,
    files: dict[str, str] | None = None,
    *,
    reference_landmarks: Collection[str] | None = None,
    reference: str = "the reference",
) -> ReleaseData:
    """Open the release in directory ``root`` and map its metadata to the canonical schema.

    ``files`` may name any of the roles (``level4``, ``inst_info``, ``gene_info``,
    ``pert_info``, ``cell_info``) explicitly, relative to ``root``; the rest are found by
    their GEO-style names. A directory holding a single ``.gct`` file is a GCT-text release
    whose metadata may be embedded in the GCT. ``reference_landmarks`` (the landmark genes
    of ``reference``, e.g. a release in the lake) names the genes behind a wrong landmark
    count (:func:`~l1000_assets.core.releases.schema.canonical_genes`).
    """
    landmarks = {"reference_landmarks": reference_landmarks, "reference": reference}
    root = Path(root)
    files = {k: root / v for k, v in (files or {}).items()}
    if not root.is_dir():
        raise L1000InputError(root, "release directory not found")
    gct = files.get("level4") if files.get("level4", Path()).suffix == ".gct" else None
    if gct is None and "level4" not in files:
        gct = _find_gct(root)
    if gct is not None:
        return _open_gct_release(name, gct, files, landmarks)
    found = (
        find_release_files(root) if not {"level4", "inst_info", "gene_info"} <= set(files) else None
    )
    for role in ("level4", "inst_info", "gene_info", "pert_info", "cell_info"):
        if role not in files and found is not None and getattr(found, role) is not None:
            files[role] = getattr(found, role)
    for role, path in files.items():
        if not path.exists():
            raise L1000InputError(path, f"{role} file not found")
    inst_raw = read_info_table(files["inst_info"])
    instances = canonical_instances(inst_raw, name, path=files["inst_info"])
    drift = instance_schema_drift(inst_raw, instances, path=files["inst_info"])
    genes = canonical_genes(
        read_info_table(files["gene_info"]), path=files["gene_info"], **landmarks
    )
    perts = (
        canonical_perturbagens(read_info_table(files["pert_info"]), name, path=files["pert_info"])
        if "pert_info" in files
        else perturbagens_from_instances(instances)
    )
    cells = (
        canonical_cell_lines(read_info_table(files["cell_info"]), name, path=files["cell_info"])
        if "cell_info" in files
        else cell_lines_from_instances(instances)
    )
    return ReleaseData(name, files["level4"], instances, genes, perts, cells, files, drift)


def _open_gct_release(
    name: str, gct: Path, files: dict[str, Path], landmarks: dict[str, object]
) -> ReleaseData:
    source = open_matrix(gct)
    if "inst_info" in files:
        inst_raw = read_info_table(files["inst_info"])
    else:
        inst_raw = source.col_metadata().reset_index().astype("string")
        inst_raw = inst_raw.rename(columns={inst_raw.columns[0]: "inst_id"})
    instances = canonical_instances(inst_raw, name, path=files.get("inst_info", gct))
    drift = instance_schema_drift(inst_raw, instances, path=files.get("inst_info", gct))
    if "gene_info" in files:
        genes_raw = read_info_table(files["gene_info"])
    else:
        genes_raw = source.row_metadata().reset_index(drop=True).astype("string")
        if "pr_is_lm" not in genes_raw.columns and "pr_is_lmark" not in genes_raw.columns:
            genes_raw["pr_is_lm"] = "1"  # a 978-row GCT holds only landmarks
    genes = canonical_genes(genes_raw, path=files.get("gene_info", gct), **landmarks)
    perts = perturbagens_from_instances(instances)
    cells = cell_lines_from_instances(instances)
    files = {**files, "level4": gct}
    return ReleaseData(name, gct, instances, genes, perts, cells, files, drift)


def find_matrix(root: str | Path, files: Mapping[str, str] | None = None) -> Path:
    """The level-4 matrix (GCTX or GCT text) of the release in ``root``, found as
    :func:`open_release` finds it but without reading any metadata table.

    ``files`` may name it as role ``level4``, relative to ``root``.
    """
    root = Path(root)
    if not root.is_dir():
        raise L1000InputError(root, "release directory not found")
    if files and "level4" in files:
        path = root / files["level4"]
    else:
        path = _find_gct(root) or find_release_files(root).level4
    if not path.exists():
        raise L1000InputError(path, "level4 file not found")
    return path
