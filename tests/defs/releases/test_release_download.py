"""release_files for a public release, served by a mirror on 127.0.0.1: download, gunzip,
SHA-512 check, skip when unchanged, reject a corrupted file."""

import gzip
import hashlib

import dagster as dg
import pytest

from l1000_assets.core.releases.registry import KNOWN_RELEASES
from l1000_assets.core.releases.synthetic import (
    SyntheticConfig,
    write_synthetic_release,
)

GEO = KNOWN_RELEASES["GSE92742"]


@pytest.fixture
def mirror(site, tmp_path):
    """A tiny synthetic release published under GSE92742's real file names, gzipped."""
    files = write_synthetic_release(tmp_path / "src", SyntheticConfig(n_profiles=300, seed=4))
    local = {
        "level4": files.level4,
        "inst_info": files.inst_info,
        "gene_info": files.gene_info,
        "pert_info": files.pert_info,
        "cell_info": files.cell_info,
    }
    sums = []
    for role, path in local.items():
        data = gzip.compress(path.read_bytes(), compresslevel=1)
        site.put(f"/geo/{GEO.files[role]}", data)
        sums.append(f"{hashlib.sha512(data).hexdigest()}  {GEO.files[role]}")
    site.put(f"/geo/{GEO.files['checksums']}", gzip.compress("\n".join(sums).encode()))
    return site


def _graph(tmp_path, base_url):
    from l1000_assets.definitions import defs
    from l1000_assets.lib.releases import ReleaseRegistry
    from l1000_assets.lib.resources import LakeResource

    definitions = defs()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("release", ["GSE92742"])
    resources = {
        "lake": LakeResource(root=str(tmp_path / "data")),
        "releases": ReleaseRegistry(mirrors={"GSE92742": base_url}, retries=2),
    }

    def run(**kwargs):
        return dg.materialize(
            [*definitions.assets, *definitions.asset_checks],
            selection=["release_files", "release_metadata"],
            instance=instance,
            resources=resources,
            partition_key="GSE92742",
            **kwargs,
        )

    return run


def test_public_release_through_a_mirror(mirror, tmp_path):
    run = _graph(tmp_path, mirror.base + "/geo")
    result = run()
    assert result.success
    root = tmp_path / "data" / "releases" / "GSE92742"
    names = {p.name for p in root.iterdir()}
    assert "GSE92742_Broad_LINCS_Level4_ZSPCINF_mlr12k_n1319138x12328.gctx" in names  # gunzipped
    meta = result.asset_materializations_for_node("release_files")[0].metadata
    assert meta["n_files"].value == 5
    assert "GSE92742" in meta["source"].value and "mirror" in meta["source"].value
    mat = result.asset_materializations_for_node("release_metadata")[0]
    assert mat.metadata["dagster/row_count"].value == 300
    version = result.asset_materializations_for_node("release_files")[0]
    gets = len(mirror.requests("GET"))

    again = run()
    assert again.success
    assert len(mirror.requests("GET")) == gets  # unchanged files: HEAD only, no download
    assert (
        again.asset_materializations_for_node("release_files")[0].tags["dagster/data_version"]
        == version.tags["dagster/data_version"]
    )


def test_corrupted_file_is_rejected_and_the_good_copy_kept(mirror, tmp_path):
    run = _graph(tmp_path, mirror.base + "/geo")
    assert run().success
    inst = tmp_path / "data" / "releases" / "GSE92742" / "GSE92742_Broad_LINCS_inst_info.txt"
    before = inst.read_bytes()
    path = f"/geo/{GEO.files['inst_info']}"
    mirror.put(path, gzip.compress(before.replace(b"trt_cp", b"trt_XX")))  # new ETag, bad bytes
    result = run(raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert "GSE92742_Broad_LINCS_inst_info.txt" in message and "SHA-512" in message.upper()
    assert inst.read_bytes() == before
