"""Resources shared by the assets."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

DATA_ROOT_ENV = "L1000_DATA_ROOT"
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
        return self.path / "releases" / release


def lake_from_env() -> LakeResource:
    """The lake resource, from ``L1000_DATA_ROOT`` when it is set."""
    if DATA_ROOT_ENV in os.environ:
        return LakeResource(root=dg.EnvVar(DATA_ROOT_ENV))
    return LakeResource(root=DEFAULT_DATA_ROOT)
