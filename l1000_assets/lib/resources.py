"""Resources shared by the assets."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from l1000_assets.lib.partitions import (
    ALL_SPLIT,
    PartitionKeyError,
    cell_line_partitions,
    check_partition_key,
    release_partitions,
    served_split,
    split_partitions,
    valid_partition_key,
)

KEY = "{key}"
_RELEASE = release_partitions.name
_CELL_LINE = cell_line_partitions.name
_SPLIT = split_partitions.name

DATA_ROOT_ENV = "L1000_DATA_ROOT"
QUERIES_DIR_ENV = "L1000_QUERIES_DIR"
DEFAULT_DATA_ROOT = "data"


class LakeResource(dg.ConfigurableResource):
    """Where the Parquet lake, releases, models and the DuckDB catalog live.

    Set with the ``L1000_DATA_ROOT`` environment variable (default ``./data``, relative to
    the directory Dagster runs in; the Makefile sets it to ``<repo>/data``). ``model_dir`` is the
    served model, the ``all`` split's unless ``L1000_SERVED_SPLIT`` names another.
    """

    root: str = Field(description="Data root directory (releases, lake, models, catalog).")
    served_split: str = Field(
        default=ALL_SPLIT,
        description="The embedding_model partition that read-across, the embeddings and the "
        "catalog use: 'all' (every perturbagen trained) unless L1000_SERVED_SPLIT says otherwise.",
    )

    @property
    def path(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def keyed_path(self, partition: str, key: str, *parts: str) -> Path:
        """``<root>/<parts...>`` with ``{key}`` in the parts replaced by a partition key: the
        one way a partition key becomes a path.

        The key must follow its partition's rule
        (:func:`~l1000_assets.lib.partitions.check_partition_key`), and the path, symlinks
        resolved, must lie strictly under the directory the parts before the first ``{key}``
        name; otherwise :class:`~l1000_assets.lib.partitions.PartitionKeyError` (a
        ``dg.Failure`` naming the partition and the key) is raised and nothing is created.
        E.g. ``keyed_path("split", key, "models", "embedding_model", "{key}")``.
        """
        fixed = list(itertools.takewhile(lambda part: KEY not in part, parts))
        if len(fixed) == len(parts):
            raise ValueError(f"no {KEY} in the path parts {parts}")
        check_partition_key(partition, key)
        base = self.path.joinpath(*fixed)
        path = self.path.joinpath(*(part.replace(KEY, key) for part in parts))
        real_base, real = base.resolve(), path.resolve()
        if real == real_base or not real.is_relative_to(real_base):
            raise PartitionKeyError(
                partition, key, f"{path} resolves to {real}, outside {real_base}; nothing written"
            )
        return path

    def release_dir(self, release: str) -> Path:
        """Downloaded or generated release files."""
        return self.keyed_path(_RELEASE, release, "releases", KEY)

    def metadata_dir(self, release: str) -> Path:
        """Canonical metadata tables of one release (Parquet)."""
        return self.keyed_path(_RELEASE, release, "lake", "metadata", f"release={KEY}")

    def release_manifest_path(self, release: str) -> Path:
        """``release_files``' record of the release's files (sizes, hashes, versions)."""
        return self.keyed_path(_RELEASE, release, "lake", "metadata", f"{KEY}.release_files.json")

    def metadata_releases(self) -> list[str]:
        """Releases whose canonical metadata is in the lake (directories named by a valid
        release key)."""
        base = self.path / "lake" / "metadata"
        if not base.is_dir():
            return []
        names = (p.name.split("=", 1)[1] for p in base.glob("release=*") if p.is_dir())
        return sorted(n for n in names if valid_partition_key(_RELEASE, n))

    @property
    def landmark_profiles_dir(self) -> Path:
        """The landmark lake: one ``cell_id=<line>`` directory per cell line."""
        return self.path / "lake" / "landmark_profiles"

    def landmark_dir(self, cell_line: str) -> Path:
        """Landmark profiles of one cell line: one Parquet file per release."""
        return self.keyed_path(_CELL_LINE, cell_line, "lake", "landmark_profiles", f"cell_id={KEY}")

    def landmark_files(self) -> list[Path]:
        """Every landmark profile file in the lake (all cell lines, all releases)."""
        base = self.landmark_profiles_dir
        return sorted(base.glob("cell_id=*/*.parquet")) if base.is_dir() else []

    def split_path(self, split: str) -> Path:
        """``perturbagen_split`` of one split partition."""
        return self.keyed_path(_SPLIT, split, "lake", "perturbagen_split", f"split={KEY}.parquet")

    def normalization_path(self, split: str) -> Path:
        """``normalization_stats`` of one split partition (its training profiles)."""
        return self.keyed_path(_SPLIT, split, "models", "normalization_stats", f"{KEY}.json")

    def split_model_dir(self, split: str) -> Path:
        """``embedding_model`` of one split partition."""
        return self.keyed_path(_SPLIT, split, "models", "embedding_model", KEY)

    @property
    def model_dir(self) -> Path:
        """The served model: the ``embedding_model`` partition ``served_split``."""
        return self.split_model_dir(self.served_split)

    def checkpoint_dir(self, split: str) -> Path:
        """Training checkpoints of one split partition's model."""
        return self.keyed_path(_SPLIT, split, "models", "checkpoints", "embedding_model", KEY)

    def evaluation_ranks_path(self, split: str) -> Path:
        """``evaluation_ranks`` of one split partition (beside, not inside, the evaluation
        directory that ``evaluation_metrics`` swaps in whole)."""
        return self.keyed_path(_SPLIT, split, "lake", "evaluation_ranks", f"split={KEY}.parquet")

    @property
    def compound_fingerprints_path(self) -> Path:
        """ECFP4 fingerprints of every compound with a SMILES (Parquet)."""
        return self.path / "lake" / "structure" / "compound_fingerprints.parquet"

    @property
    def catalog_path(self) -> Path:
        """The DuckDB catalog (written only by the ``warehouse`` asset)."""
        return self.path / "catalog" / "l1000.duckdb"

    @property
    def embeddings_dir(self) -> Path:
        """Profile, signature and perturbagen embeddings (Parquet)."""
        return self.path / "lake" / "embeddings"

    @property
    def profile_embeddings_dir(self) -> Path:
        """Profile embeddings: one ``cell_id=<line>`` directory per cell line."""
        return self.embeddings_dir / "profiles"

    def profile_embeddings_path(self, cell_line: str) -> Path:
        return self.keyed_path(
            _CELL_LINE,
            cell_line,
            "lake",
            "embeddings",
            "profiles",
            f"cell_id={KEY}",
            "embeddings.parquet",
        )

    def profile_embedding_files(self) -> list[Path]:
        """Every profile embeddings file (one per cell line)."""
        base = self.profile_embeddings_dir
        return sorted(base.glob("cell_id=*/embeddings.parquet")) if base.is_dir() else []

    @property
    def signature_embeddings_path(self) -> Path:
        return self.embeddings_dir / "signatures.parquet"

    @property
    def perturbagen_embeddings_path(self) -> Path:
        return self.embeddings_dir / "perturbagens.parquet"

    @property
    def zscore_signatures_dir(self) -> Path:
        """MODZ z-score signatures: one ``cell_id=<line>`` directory per cell line."""
        return self.path / "lake" / "zscore_signatures"

    def zscore_signatures_path(self, cell_line: str) -> Path:
        """MODZ z-score signatures of one cell line."""
        return self.keyed_path(
            _CELL_LINE,
            cell_line,
            "lake",
            "zscore_signatures",
            f"cell_id={KEY}",
            "signatures.parquet",
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
    root = dg.EnvVar(DATA_ROOT_ENV) if DATA_ROOT_ENV in os.environ else DEFAULT_DATA_ROOT
    return LakeResource(root=root, served_split=served_split())
