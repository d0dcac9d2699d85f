"""Shared fixtures: the real L1000 files in ../shared and a small synthetic release."""

from pathlib import Path

import pytest

from l1000_assets.core.releases.synthetic import (
    SyntheticConfig,
    write_synthetic_release,
)
from tests.http_site import Site, serving

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real-l1000"

SMALL_PROFILES = 2_000


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.fail(
            f"real L1000 fixtures not found at {REAL} (CI places ../shared beside the repo)"
        )
    return REAL


@pytest.fixture(scope="session")
def small_config() -> SyntheticConfig:
    return SyntheticConfig(n_profiles=SMALL_PROFILES, seed=7)


@pytest.fixture(scope="session")
def small_release(tmp_path_factory, small_config):
    """A 2,000-profile synthetic release written once per test session."""
    return write_synthetic_release(tmp_path_factory.mktemp("small_release"), small_config)


@pytest.fixture(scope="session")
def small_lake(tmp_path_factory, small_release):
    """The small synthetic release ingested into a landmark lake: the list of Parquet files."""
    from l1000_assets.core.lake.ingest import write_landmark_profiles
    from l1000_assets.core.releases.local import open_release
    from l1000_assets.core.releases.reconcile import reconcile

    root = tmp_path_factory.mktemp("lake")
    release = open_release("synthetic", small_release.root)
    rec = reconcile(release)
    cells = sorted(
        rec.instances.loc[rec.instances["profile_class"] != "control", "cell_id"].unique()
    )
    paths = {c: root / f"cell_id={c}" / "synthetic.parquet" for c in cells}
    write_landmark_profiles(release, rec, paths)
    return sorted(paths.values())


@pytest.fixture
def site(monkeypatch):
    """An HTTP server on 127.0.0.1 serving in-memory files (see tests/http_site.py)."""
    # A proxy from the environment would intercept requests meant for the local server.
    for var in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv(var.upper(), raising=False)
    with serving(Site()) as site:
        yield site
