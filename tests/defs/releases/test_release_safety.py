"""Releases that would erase good data, drift in optional columns and wrong landmark counts,
through Dagster: a drop-in release ingested, then a bad version of it."""

import hashlib
import shutil
from pathlib import Path

import dagster as dg
import h5py
import pandas as pd
import pytest

from l1000_assets.core.formats.gctx import COL_IDS_NODE, MATRIX_NODE, ROW_IDS_NODE
from l1000_assets.lib.demo import ASSET_PARTITION_RANGE_END, ASSET_PARTITION_RANGE_START
from l1000_assets.lib.releases import ReleaseRegistry
from l1000_assets.lib.resources import LakeResource

NAME = "lab"


class Lake:
    """A data root with one drop-in release, ingested through Dagster."""

    def __init__(self, root: Path, release_files):
        from l1000_assets.definitions import defs

        self.root = root
        self.release = root / "releases" / "incoming" / NAME
        shutil.copytree(release_files.root, self.release)
        self.inst_info = self.release / release_files.inst_info.name
        self.gene_info = self.release / release_files.gene_info.name
        self.level4 = self.release / release_files.level4.name
        definitions = defs()
        self.assets = [*definitions.assets, *definitions.asset_checks]
        self.instance = dg.DagsterInstance.ephemeral()
        self.instance.add_dynamic_partitions("release", [NAME])

    def run(self, selection, config=None, partition=NAME, tags=None):
        return dg.materialize(
            self.assets,
            selection=selection,
            partition_key=partition,
            instance=self.instance,
            resources={"lake": LakeResource(root=str(self.root)), "releases": ReleaseRegistry()},
            run_config={"ops": config or {}},
            tags=tags or {},
            raise_on_error=False,
        )

    def metadata(self, config=None, name=NAME):
        return self.run(["release_files", "release_metadata"], config, partition=name)

    def landmarks(self, config=None):
        cells = self.instance.get_dynamic_partitions("cell_line")
        tags = {ASSET_PARTITION_RANGE_START: cells[0], ASSET_PARTITION_RANGE_END: cells[-1]}
        return self.run(["landmark_profiles"], config, partition=None, tags=tags)

    def files(self) -> dict[str, str]:
        """Every data file of the lake, byte for byte (not release_files' record of what
        the release directory holds now)."""
        lake = self.root / "lake"
        return {
            str(p.relative_to(lake)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(lake.rglob("*"))
            if p.is_file() and not p.name.endswith(".release_files.json")
        }


def failure(result) -> str:
    assert not result.success
    return str(
        [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][
            0
        ].event_specific_data.error
    )


@pytest.fixture
def lake(tmp_path, small_release) -> Lake:
    lake = Lake(tmp_path / "data", small_release)
    assert lake.metadata().success and lake.landmarks().success
    return lake


def test_a_version_with_only_controls_is_refused_and_the_lake_kept(lake):
    good = lake.files()
    inst = pd.read_csv(lake.inst_info, sep="\t", dtype=str)
    inst["pert_type"] = "ctl_vehicle"
    inst.to_csv(lake.inst_info, sep="\t", index=False)
    message = failure(lake.metadata())
    assert "no treatment profiles" in message and f"{len(inst):,} profile(s)" in message
    assert "allow_shrink" in message
    assert lake.files() == good
    # Allowed: the metadata is replaced, but landmark_profiles still refuses to empty the lake.
    allow = {"release_metadata": {"config": {"allow_shrink": True}}}
    assert lake.metadata(allow).success
    message = failure(lake.landmarks())
    assert "allow_shrink" in message and "in the lake" in message
    lake_files = {k: v for k, v in lake.files().items() if k.startswith("landmark_profiles")}
    assert lake_files == {k: v for k, v in good.items() if k.startswith("landmark_profiles")}
    assert lake.landmarks({"landmark_profiles": {"config": {"allow_shrink": True}}}).success


def test_a_version_with_no_profiles_is_refused(lake):
    good = lake.files()
    header = lake.inst_info.read_text().splitlines()[0]
    lake.inst_info.write_text(header + "\n")
    with h5py.File(lake.level4, "r") as f:
        genes = f[ROW_IDS_NODE][()]
    lake.level4.unlink()
    with h5py.File(lake.level4, "w") as f:  # a GCTX of 0 columns
        f.create_dataset(MATRIX_NODE, shape=(0, len(genes)), dtype="float32")
        f.create_dataset(ROW_IDS_NODE, data=genes)
        f.create_dataset(COL_IDS_NODE, shape=(0,), dtype=h5py.string_dtype())
    message = failure(lake.metadata())
    assert "no treatment profiles" in message and "0 profile(s)" in message
    assert lake.files() == good


def test_a_version_that_halves_the_release_is_refused(lake):
    good = lake.files()
    inst = pd.read_csv(lake.inst_info, sep="\t", dtype=str)
    inst.iloc[: len(inst) * 2 // 5].to_csv(lake.inst_info, sep="\t", index=False)
    skip = {"on_bad_input": "skip"}
    message = failure(lake.metadata({"release_metadata": {"config": skip}}))
    assert "more than half" in message and "allow_shrink" in message
    assert lake.files() == good
    allowed = lake.metadata({"release_metadata": {"config": {**skip, "allow_shrink": True}}})
    assert allowed.success
    mat = allowed.asset_materializations_for_node("release_metadata")[0]
    assert "more than half" in mat.metadata["shrink_allowed"].value


def test_a_renamed_optional_column_is_recorded_and_fails_strict_schema(lake):
    inst = pd.read_csv(lake.inst_info, sep="\t", dtype=str)
    inst.rename(columns={"pert_dose": "dose"}).to_csv(lake.inst_info, sep="\t", index=False)
    result = lake.metadata()
    assert result.success
    warnings = result.asset_materializations_for_node("release_metadata")[0].metadata[
        "schema_warnings"
    ]
    assert "pert_dose" in warnings.value and "'dose'" in warnings.value
    message = failure(lake.metadata({"release_metadata": {"config": {"strict_schema": True}}}))
    assert "pert_dose" in message and "strict_schema" in message


def test_wrong_landmark_count_names_the_genes_against_the_lake(lake, small_release):
    second = lake.root / "releases" / "incoming" / "lab2"
    shutil.copytree(small_release.root, second)
    genes = pd.read_csv(second / lake.gene_info.name, sep="\t", dtype=str)
    dropped = genes.loc[genes["pr_is_lm"] == "1", "pr_gene_id"].tolist()[:3]
    genes.loc[genes["pr_gene_id"].isin(dropped), "pr_is_lm"] = "0"
    genes.to_csv(second / lake.gene_info.name, sep="\t", index=False)
    lake.instance.add_dynamic_partitions("release", ["lab2"])
    message = failure(lake.metadata(name="lab2"))
    assert "975 landmark genes marked" in message and f"release {NAME}" in message
    assert all(f"'{g}'" in message for g in dropped)
