"""Where the read side of a data root lives, without Dagster: the served model, the
metadata tables, the embeddings and the DuckDB catalog.

:class:`~l1000_assets.lib.resources.LakeResource` (the Dagster resource, which also builds
the write paths from partition keys) takes these paths from here, and the command line uses
:class:`DataRoot` directly, so ``l1000 read-across`` and ``l1000 similar`` start without
importing Dagster (seconds on a small machine).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

#: ``lake/metadata/release=<name>/``: the canonical metadata tables of one release.
RELEASE_DIR_PREFIX = "release="
#: The split whose model is served (``lib.partitions`` holds the same names, with Dagster).
ALL_SPLIT = "all"
SERVED_SPLIT_ENV = "L1000_SERVED_SPLIT"
#: The synthetic generator's manifest beside its release files (``"synthetic": true``).
SYNTHETIC_MANIFEST = "synthetic_release.json"
_SPLIT_KEY = re.compile(r"^(all|split_(0|[1-9][0-9]{0,5}))$")


@dataclass(frozen=True)
class DataRoot:
    """The read-side paths under one data root."""

    path: Path
    served_split: str = ALL_SPLIT

    @classmethod
    def at(cls, root: str | Path, served_split: str | None = None) -> DataRoot:
        """The data root at ``root``, serving ``served_split`` (default
        ``$L1000_SERVED_SPLIT``, else ``all``)."""
        split = served_split or os.environ.get(SERVED_SPLIT_ENV, "").strip() or ALL_SPLIT
        if not _SPLIT_KEY.match(split):
            raise ValueError(
                f"{SERVED_SPLIT_ENV}={split!r}: a split is 'all' or 'split_<seed>' (e.g. split_0)"
            )
        return cls(Path(root).expanduser().resolve(), split)

    @property
    def metadata_base(self) -> Path:
        return self.path / "lake" / "metadata"

    @property
    def model_dir(self) -> Path:
        """The served embedding model (``embedding.keras``, its weights, ``card.json``): the
        ``embedding_model`` partition ``served_split``."""
        return self.path / "models" / "embedding_model" / self.served_split

    @property
    def catalog_path(self) -> Path:
        """The DuckDB catalog (written only by the ``warehouse`` asset)."""
        return self.path / "catalog" / "l1000.duckdb"

    @property
    def embeddings_dir(self) -> Path:
        """Profile, signature and perturbagen embeddings (Parquet)."""
        return self.path / "lake" / "embeddings"

    @property
    def perturbagen_embeddings_path(self) -> Path:
        return self.embeddings_dir / "perturbagens.parquet"

    def metadata_releases(self) -> list[str]:
        """Names of the releases whose metadata directory exists, sorted."""
        if not self.metadata_base.is_dir():
            return []
        return sorted(
            p.name[len(RELEASE_DIR_PREFIX) :]
            for p in self.metadata_base.glob(f"{RELEASE_DIR_PREFIX}*")
            if p.is_dir()
        )

    def synthetic_releases(self) -> list[str]:
        """The releases with metadata here whose files carry the synthetic generator's
        manifest with ``"synthetic": true`` (``releases/<name>/``), so that figures from
        them are labelled as such."""
        import json

        out = []
        for name in self.metadata_releases():
            manifest = (self.path / "releases" / name / SYNTHETIC_MANIFEST).resolve()
            if not manifest.is_relative_to(self.path):
                continue  # a release name that would leave the data root
            try:
                if manifest.exists() and json.loads(manifest.read_text()).get("synthetic") is True:
                    out.append(name)
            except (OSError, ValueError):
                continue
        return out

    def metadata_files(self, table: str, releases: list[str] | None = None) -> list[Path]:
        """One canonical metadata table (``genes``, ``perturbagens``...) of each release
        (default: every release directory) that has it."""
        names = self.metadata_releases() if releases is None else releases
        return [
            p
            for r in names
            if (p := self.metadata_base / f"{RELEASE_DIR_PREFIX}{r}" / f"{table}.parquet").exists()
        ]
