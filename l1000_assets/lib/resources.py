"""Resources shared by the assets."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

DATA_ROOT_ENV = "L1000_DATA_ROOT"
QUERIES_DIR_ENV = "L1000_QUERIES_DIR"
DEFAULT_DATA_ROOT = "data"


class LakeResource(dg.ConfigurableResource):
    """Where the Parquet lake, releases, models and the DuckDB catalog live.

    Set with the ``L1000_DATA_ROOT`` environment variable (default ``./data``, relative to
    the directory Dagster runs in; the Makefile sets it to ``<repo>/data``).
    """

    root: str = Field(description="Data root directory (releases, lake, models, catalog).")

    @property
    def path(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def release_dir(self, release: str) -> Path:
        """Downloaded or generated release files."""
        return self.path / "releases" / release

    def metadata_dir(self, release: str) -> Path:
        """Canonical metadata tables of one release (Parquet)."""
        return self.path / "lake" / "metadata" / f"release={release}"

    def release_manifest_path(self, release: str) -> Path:
        """``release_files``' record of the release's files (sizes, hashes, versions)."""
        return self.path / "lake" / "metadata" / f"{release}.release_files.json"

    def metadata_releases(self) -> list[str]:
        """Releases whose canonical metadata is in the lake."""
        base = self.path / "lake" / "metadata"
        if not base.is_dir():
            return []
        return sorted(p.name.split("=", 1)[1] for p in base.glob("release=*") if p.is_dir())

    def landmark_dir(self, cell_line: str) -> Path:
        """Landmark profiles of one cell line: one Parquet file per release."""
        return self.path / "lake" / "landmark_profiles" / f"cell_id={cell_line}"

    def landmark_files(self) -> list[Path]:
        """Every landmark profile file in the lake (all cell lines, all releases)."""
        base = self.path / "lake" / "landmark_profiles"
        return sorted(base.glob("cell_id=*/*.parquet")) if base.is_dir() else []

    @property
    def split_path(self) -> Path:
        return self.path / "lake" / "perturbagen_split.parquet"

    @property
    def normalization_path(self) -> Path:
        return self.path / "models" / "normalization_stats.json"

    @property
    def model_dir(self) -> Path:
        return self.path / "models" / "embedding_model"

    @property
    def split_models_dir(self) -> Path:
        """One model per further perturbagen split: ``seed=<s>/`` directories."""
        return self.path / "models" / "splits"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "models" / "checkpoints" / "embedding_model"

    @property
    def catalog_path(self) -> Path:
        """The DuckDB catalog (written only by the ``warehouse`` asset)."""
        return self.path / "catalog" / "l1000.duckdb"

    @property
    def embeddings_dir(self) -> Path:
        """Profile, signature and perturbagen embeddings (Parquet)."""
        return self.path / "lake" / "embeddings"

    def profile_embeddings_path(self, cell_line: str) -> Path:
        return self.embeddings_dir / "profiles" / f"cell_id={cell_line}" / "embeddings.parquet"

    def profile_embedding_files(self) -> list[Path]:
        """Every profile embeddings file (one per cell line)."""
        base = self.embeddings_dir / "profiles"
        return sorted(base.glob("cell_id=*/embeddings.parquet")) if base.is_dir() else []

    @property
    def signature_embeddings_path(self) -> Path:
        return self.embeddings_dir / "signatures.parquet"

    @property
    def perturbagen_embeddings_path(self) -> Path:
        return self.embeddings_dir / "perturbagens.parquet"

    def zscore_signatures_path(self, cell_line: str) -> Path:
        """MODZ z-score signatures of one cell line."""
        return (
            self.path / "lake" / "zscore_signatures" / f"cell_id={cell_line}" / "signatures.parquet"
        )

    def metadata_files(self, table: str) -> list[Path]:
        """One canonical metadata table (``genes``, ``perturbagens``...) of every release."""
        return [
            p
            for r in self.metadata_releases()
            if (p := self.metadata_dir(r) / f"{table}.parquet").exists()
        ]

    @property
    def read_across_dir(self) -> Path:
        """Results of the user's query files, and the perturbagen map."""
        return self.path / "lake" / "read_across"

    @property
    def queries_dir(self) -> Path:
        """The folder watched for query files: ``L1000_QUERIES_DIR`` when set, else
        ``<root>/queries``."""
        override = os.environ.get(QUERIES_DIR_ENV)
        return Path(override).expanduser().resolve() if override else self.path / "queries"


def lake_from_env() -> LakeResource:
    """The lake resource, from ``L1000_DATA_ROOT`` when it is set."""
    if DATA_ROOT_ENV in os.environ:
        return LakeResource(root=dg.EnvVar(DATA_ROOT_ENV))
    return LakeResource(root=DEFAULT_DATA_ROOT)
