"""A catalog built from sql/ over the small synthetic lake, with embeddings from a fixed
random projection (no model needed), shared by the catalog tests."""

import shutil

import numpy as np
import pytest

from l1000_assets.core.catalog.build import build_catalog
from l1000_assets.core.embeddings.aggregates import (
    write_perturbagen_embeddings,
    write_profile_embeddings,
    write_signature_embeddings,
)
from l1000_assets.core.embeddings.modz import write_zscore_signatures
from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.releases.local import open_release
from tests.conftest import REPO

DIM = 16  # not the default 32: the tables take their width from the files


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, small_release, small_lake):
    root = tmp_path_factory.mktemp("macros")
    lake = root / "lake"
    shutil.copytree(small_lake[0].parent.parent, lake / "landmark_profiles")
    release = open_release("synthetic", small_release.root)
    meta = lake / "metadata" / "release=synthetic"
    meta.mkdir(parents=True)
    for name in ("genes", "perturbagens", "instances", "cell_lines"):
        getattr(release, name).to_parquet(meta / f"{name}.parquet", index=False)
    w = np.random.default_rng(5).normal(size=(N_LANDMARKS, DIM)).astype(np.float32)

    def embed(x):
        z = x @ w
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    emb = lake / "embeddings"
    profile_files = []
    for cell_dir in sorted((lake / "landmark_profiles").iterdir()):
        files = sorted(cell_dir.glob("*.parquet"))
        out = emb / "profiles" / cell_dir.name / "embeddings.parquet"
        write_profile_embeddings(files, embed, out, version="test")
        write_zscore_signatures(
            files, lake / "zscore_signatures" / cell_dir.name / "signatures.parquet"
        )
        profile_files.append(out)
    write_signature_embeddings(profile_files, emb / "signatures.parquet")
    write_perturbagen_embeddings(profile_files, emb / "perturbagens.parquet")
    report = build_catalog(root / "c.duckdb", REPO / "sql", lake)
    assert not [h for h in report.skipped if "embedding" in h or "zscore" in h]
    return root / "c.duckdb", lake
