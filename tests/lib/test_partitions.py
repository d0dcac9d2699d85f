"""Partition keys become paths: every key is checked, and the path it builds stays under the
lake, before anything is written or swapped."""

import hashlib
from pathlib import Path

import dagster as dg
import pytest

from l1000_assets.lib.partitions import PartitionKeyError, check_partition_key
from l1000_assets.lib.releases import ReleaseRegistry
from l1000_assets.lib.resources import LakeResource

HOSTILE = ["../../../../models", "../../../../../outside", "..", "a/b", ".hidden", ""]


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its SHA-256 (byte for byte), and every directory."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


@pytest.mark.parametrize("key", HOSTILE)
def test_every_path_builder_refuses_a_hostile_key(tmp_path, key):
    lake = LakeResource(root=str(tmp_path))
    builders = [
        lake.landmark_dir,
        lake.profile_embeddings_path,
        lake.zscore_signatures_path,
    ]
    for build in builders:
        with pytest.raises(PartitionKeyError, match="cell_line") as caught:
            build(key)
        assert repr(key) in str(caught.value)
    for build in (lake.release_dir, lake.metadata_dir, lake.release_manifest_path):
        with pytest.raises(PartitionKeyError, match="release"):
            build(key)
    assert list(tmp_path.iterdir()) == []


def test_keys_of_any_partition_go_through_one_guard(tmp_path):
    lake = LakeResource(root=str(tmp_path))
    # A partition without a rule of its own: any plain file name.
    assert lake.keyed_path("sweep", "seed-3", "models", "sweeps", "sweep={key}") == (
        lake.path / "models" / "sweeps" / "sweep=seed-3"
    )
    for key in ("../../x", "a/b", ".."):
        with pytest.raises(PartitionKeyError, match=r"sweep"):
            lake.keyed_path("sweep", key, "models", "sweeps", "sweep={key}")
    # The split partition has its own rule: all or split_<seed>.
    assert lake.split_model_dir("split_3") == lake.path / "models" / "embedding_model" / "split_3"
    for key in ("seed-3", "../../x", "split_03", "all/.."):
        with pytest.raises(PartitionKeyError, match=r"split"):
            lake.split_model_dir(key)
    # Real cell line and release names pass.
    for cell in ("SK-N-SH", "NCI-H716", "HT29", "A375.311"):
        assert check_partition_key("cell_line", cell) == cell
    assert lake.landmark_dir("SK-N-SH") == lake.path / "lake/landmark_profiles/cell_id=SK-N-SH"
    assert lake.release_dir("GSE92742") == lake.path / "releases" / "GSE92742"


def test_a_symlink_out_of_the_lake_is_refused(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "outside"
    (root / "lake" / "landmark_profiles").mkdir(parents=True)
    outside.mkdir()
    (root / "lake" / "landmark_profiles" / "cell_id=A549").symlink_to(outside)
    with pytest.raises(PartitionKeyError, match="outside"):
        LakeResource(root=str(root)).landmark_dir("A549")


@pytest.mark.parametrize("asset", ["landmark_profiles", "profile_embeddings", "zscore_signatures"])
def test_a_traversal_key_added_as_the_ui_adds_it_fails_the_run_and_touches_nothing(tmp_path, asset):
    from l1000_assets.definitions import defs

    root = tmp_path / "sibling" / "data"
    models = root / "models"
    (models / "embedding_model").mkdir(parents=True)
    (models / "embedding_model" / "card.json").write_text('{"gene_order": []}')
    (models / "normalization_stats.json").write_text("{}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    before = tree_digest(tmp_path)
    keys = ["../../../../models", "../../../../../../outside"]
    instance = dg.DagsterInstance.ephemeral()
    # What GraphQL addDynamicPartition (the UI's "Add partition") ends up doing.
    instance.add_dynamic_partitions("cell_line", keys)
    definitions = defs()
    for key in keys:
        result = dg.materialize(
            [*definitions.assets],
            selection=[asset],
            instance=instance,
            resources={"lake": LakeResource(root=str(root)), "releases": ReleaseRegistry()},
            partition_key=key,
            raise_on_error=False,
        )
        assert not result.success
        failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"][0]
        message = str(failure.event_specific_data.error)
        assert repr(key) in message and "cell_line" in message
        assert tree_digest(tmp_path) == before
