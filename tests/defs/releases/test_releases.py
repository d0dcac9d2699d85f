"""Materialize the synthetic release asset and its checks with a temp data root."""

import dagster as dg
import pytest

from l1000_assets.core.releases import synthetic
from l1000_assets.defs.releases import synthetic as release_assets
from l1000_assets.lib.resources import LakeResource

ASSETS = [
    release_assets.synthetic_release,
    release_assets.synthetic_release_files_consistent,
    release_assets.synthetic_release_calibrated,
]


def _materialize(root, n_profiles, **kwargs):
    return dg.materialize(
        ASSETS,
        resources={"lake": LakeResource(root=str(root))},
        run_config={
            "ops": {"synthetic_release": {"config": {"n_profiles": n_profiles, "seed": 2}}}
        },
        instance=dg.DagsterInstance.ephemeral(),
        **kwargs,
    )


def test_materialize_synthetic_release(tmp_path):
    result = _materialize(tmp_path, 4_000)
    assert result.success
    mat = result.asset_materializations_for_node("synthetic_release")[0]
    assert mat.metadata["dagster/row_count"].value == 4_000
    assert mat.metadata["n_perturbagens"].value > 50
    release_dir = tmp_path / "releases" / "synthetic"
    assert (release_dir / "SYNTH_Broad_LINCS_Level4_ZSPCINF_mlr12k_n4000x12328.gctx").exists()
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert checks["synthetic_release_files_consistent"].passed
    assert checks["synthetic_release_calibrated"].passed, checks[
        "synthetic_release_calibrated"
    ].metadata
    metadata = checks["synthetic_release_calibrated"].metadata
    assert 0.65 <= metadata["zscore_cosine_auc"].value <= 0.76
    assert metadata["synthetic"].value is True
    assert "0.843" in metadata["figures"].value  # the paper's figures beside the synthetic
    assert mat.metadata["synthetic"].value is True


def test_failed_run_keeps_the_last_good_release(tmp_path, monkeypatch):
    assert _materialize(tmp_path, 300).success
    release_dir = tmp_path / "releases" / "synthetic"
    before = {p.name: p.read_bytes() for p in release_dir.iterdir()}

    def crash_midway(out_dir, config, progress=None):
        def stop(done, total, seconds):
            if done > 100:
                raise RuntimeError("simulated crash while writing the release")

        return synthetic.write_synthetic_release(out_dir, config, progress=stop)

    monkeypatch.setattr(release_assets, "write_synthetic_release", crash_midway)
    result = _materialize(tmp_path, 600, raise_on_error=False)
    assert not result.success
    assert {p.name: p.read_bytes() for p in release_dir.iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == ["synthetic"]


def test_config_is_validated():
    with pytest.raises(Exception, match="n_profiles"):
        release_assets.SyntheticReleaseConfig(n_profiles=5)


def test_a_drop_in_directory_is_a_release(tmp_path, small_release):
    """A directory under <data root>/releases/incoming/<name>/ ingests like a local release."""
    import shutil

    from l1000_assets.definitions import defs
    from l1000_assets.lib.releases import ReleaseRegistry

    target = tmp_path / "releases" / "incoming" / "lab_2026"
    shutil.copytree(small_release.root, target)
    definitions = defs()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("release", ["lab_2026"])
    result = dg.materialize(
        [*definitions.assets, *definitions.asset_checks],
        selection=["release_files", "release_metadata"],
        partition_key="lab_2026",
        instance=instance,
        resources={"lake": LakeResource(root=str(tmp_path)), "releases": ReleaseRegistry()},
    )
    assert result.success
    meta = result.asset_materializations_for_node("release_files")[0].metadata
    assert "drop-in directory" in meta["source"].value
    assert (tmp_path / "lake" / "metadata" / "release=lab_2026" / "instances.parquet").exists()
    assert instance.get_dynamic_partitions("cell_line")
