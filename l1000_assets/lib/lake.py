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


def read_split(lake: LakeResource, split: str) -> pd.DataFrame:
    """The ``perturbagen_split`` table of one split partition."""
    path = lake.split_path(split)
    if not path.exists():
        raise dg.Failure(f"{path} not found: materialize perturbagen_split[{split}] first")
    return pd.read_parquet(path)


def read_metadata(lake: LakeResource, release: str, table: str) -> pd.DataFrame:
    """One canonical metadata table (``instances``, ``genes``...) of one release."""
    return pd.read_parquet(lake.metadata_dir(release) / f"{table}.parquet")


def card_path(lake: LakeResource, split: str | None = None) -> Path:
    """The card of one split's model (default: the served model's); fails when it is not
    trained."""
    split = split or lake.served_split
    path = lake.split_model_dir(split) / "card.json"
    if not path.exists():
        raise dg.Failure(
            f"{path.parent}: no trained model, materialize embedding_model[{split}] first"
        )
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


def synthetic_releases(lake: LakeResource) -> list[str]:
    """The lake's releases that are synthetic (their files carry the generator's manifest
    with ``"synthetic": true``), so that figures from them are labelled as such."""
    return lake.layout.synthetic_releases()
