"""Lake look-ups several stages share: each fails the run with the asset to materialize
first when what it reads is not there yet."""

import hashlib
import json
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq

from l1000_assets.lib.resources import LakeResource


def landmark_files(lake: LakeResource) -> list[Path]:
    """Every landmark profile file in the lake; fails when there is none."""
    files = lake.landmark_files()
    if not files:
        raise dg.Failure(
            f"no landmark profiles under {lake.path / 'lake'}: materialize landmark_profiles first"
        )
    return files


def lake_fingerprint(files) -> str:
    """Names, sizes and row counts of the lake files: the model's data version."""
    parts = [
        (str(f.parent.name), f.name, f.stat().st_size, pq.ParquetFile(f).metadata.num_rows)
        for f in files
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def read_split(lake: LakeResource) -> pd.DataFrame:
    """The ``perturbagen_split`` table."""
    if not lake.split_path.exists():
        raise dg.Failure(f"{lake.split_path} not found: materialize perturbagen_split first")
    return pd.read_parquet(lake.split_path)


def read_metadata(lake: LakeResource, release: str, table: str) -> pd.DataFrame:
    """One canonical metadata table (``instances``, ``genes``...) of one release."""
    return pd.read_parquet(lake.metadata_dir(release) / f"{table}.parquet")


def card_path(lake: LakeResource) -> Path:
    """The current model's card; fails when no model is trained."""
    path = lake.model_dir / "card.json"
    if not path.exists():
        raise dg.Failure(f"{lake.model_dir}: no trained model, materialize embedding_model first")
    return path


def profile_embedding_files(lake: LakeResource) -> list[Path]:
    """Every profile embeddings file; fails when there is none."""
    files = lake.profile_embedding_files()
    if not files:
        raise dg.Failure(
            f"no profile embeddings under {lake.embeddings_dir}: materialize "
            "profile_embeddings first"
        )
    return files
