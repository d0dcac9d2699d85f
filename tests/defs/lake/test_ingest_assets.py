"""The ingest graph on a small synthetic release: dg.materialize with a temp data root."""

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from l1000_assets.core.releases.synthetic import CELL_LINES
from tests.defs.conftest import build_lake_graph

N = 3_000


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """The synthetic release ingested once, and the catalog built over it."""
    graph = build_lake_graph(tmp_path_factory.mktemp("data"), n_profiles=N, seed=1)
    graph.results["catalog"] = graph.run(["warehouse"])
    return graph


def test_partitions_come_from_the_release(graph):
    assert graph.instance.get_dynamic_partitions("release") == ["synthetic"]
    # The generator's first eight lines (the LINCS core lines, then HEPG2).
    expected = {name for name, _, _ in CELL_LINES[:8]}
    assert set(graph.cells) == expected and len(graph.cells) == 8


def test_every_check_passes(graph):
    for result in graph.results.values():
        assert result.success
        for check in result.get_asset_check_evaluations():
            assert check.passed, (check.check_name, check.metadata)


def test_lake_layout_and_counts(graph):
    root = graph.root
    lake = root / "lake" / "landmark_profiles"
    assert sorted(p.name for p in lake.iterdir()) == sorted(f"cell_id={c}" for c in graph.cells)
    mat = graph.results["lake"].asset_materializations_for_node("landmark_profiles")[0]
    total = mat.metadata["dagster/row_count"].value
    assert mat.metadata["controls_removed"].value > 0
    rows = sum(pq.read_metadata(p).num_rows for p in lake.glob("*/synthetic.parquet"))
    assert rows == total
    meta = pq.read_table(root / "lake" / "metadata" / "release=synthetic" / "instances.parquet")
    assert meta.num_rows == N
    assert total == sum(1 for c in meta.column("profile_class").to_pylist() if c != "control")


def test_catalog_answers_queries(graph):
    path = graph.root / "catalog" / "l1000.duckdb"
    with duckdb.connect(str(path), read_only=True) as con:
        n = con.execute(
            "SELECT count(*) FROM profiles p JOIN instances i USING (inst_id)"
        ).fetchall()[0][0]
        assert n > 0
        moa = con.execute(
            "SELECT count(DISTINCT moa) FROM perturbagens WHERE moa IS NOT NULL"
        ).fetchall()[0][0]
        assert moa > 5


def test_failed_ingest_keeps_the_previous_partition(graph, tmp_path):
    root = graph.root
    cell = graph.cells[0]
    part = root / "lake" / "landmark_profiles" / f"cell_id={cell}" / "synthetic.parquet"
    before = part.read_bytes()
    gctx = next((root / "releases" / "synthetic").glob("*.gctx"))
    saved = tmp_path / "saved.gctx"
    gctx.rename(saved)
    try:
        gctx.write_bytes(saved.read_bytes()[:1_000_000])  # a truncated matrix
        result = graph.run(["landmark_profiles"], partition=cell, raise_on_error=False)
        assert not result.success
        failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert "truncated or corrupt" in str(failure[0].event_specific_data.error)
    finally:
        gctx.unlink()
        saved.rename(gctx)
    assert part.read_bytes() == before
    assert sorted(p.name for p in part.parent.parent.iterdir()) == sorted(
        f"cell_id={c}" for c in graph.cells
    )


def test_one_cell_line_partition_rewrites_only_that_line(graph):
    cell = graph.cells[-1]
    other = graph.root / "lake" / "landmark_profiles" / f"cell_id={graph.cells[0]}"
    mtime = other.stat().st_mtime_ns
    result = graph.run(["landmark_profiles"], partition=cell)
    assert result.success
    assert other.stat().st_mtime_ns == mtime


def test_pyarrow_writer_config_writes_the_same_lake(graph):
    cell = graph.cells[0]
    part = graph.root / "lake" / "landmark_profiles" / f"cell_id={cell}" / "synthetic.parquet"
    fast = pq.read_table(part)
    try:
        result = graph.run(
            ["landmark_profiles"],
            partition=cell,
            config={"ops": {"landmark_profiles": {"config": {"writer": "pyarrow"}}}},
        )
        mat = result.asset_materializations_for_node("landmark_profiles")[0]
        assert mat.metadata["writer"].value == "pyarrow"
        assert pq.read_table(part).equals(fast)
        assert all(check.passed for check in result.get_asset_check_evaluations())
    finally:
        graph.run(["landmark_profiles"], partition=cell)


def test_metadata_without_profile_fails_strict_and_is_skipped_on_request(graph):
    root, cell = graph.root, graph.cells[0]
    inst_path = root / "lake" / "metadata" / "release=synthetic" / "instances.parquet"
    saved = inst_path.read_bytes()
    table = pq.read_table(inst_path)
    treated = table.filter(
        pc.and_(pc.equal(table["cell_id"], cell), pc.not_equal(table["profile_class"], "control"))
    )
    ghost = treated.slice(0, 1).set_column(
        0, "inst_id", pa.array(["GHOST_PLATE:Z99"], table.schema.field("inst_id").type)
    )
    pq.write_table(pa.concat_tables([table, ghost]), inst_path)
    try:
        result = graph.run(["landmark_profiles"], partition=cell, raise_on_error=False)
        assert not result.success
        failure = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = str(failure[0].event_specific_data.error)
        assert "instances.parquet: 1 inst_id(s) have no column in" in message
        assert "'GHOST_PLATE:Z99'" in message
        result = graph.run(
            ["landmark_profiles"],
            partition=cell,
            raise_on_error=False,
            config={"ops": {"landmark_profiles": {"config": {"on_bad_input": "skip"}}}},
        )
        mat = result.asset_materializations_for_node("landmark_profiles")[0]
        skipped = mat.metadata["skipped_ids"].value["synthetic"]
        assert skipped["n_metadata_rows_without_profile"] == 1
        assert skipped["examples_without_profile"] == "'GHOST_PLATE:Z99'"
        assert mat.metadata["dagster/row_count"].value == treated.num_rows
    finally:
        inst_path.write_bytes(saved)


def test_releases_with_different_landmark_lists_fail_the_lake_check(graph, tmp_path):
    """One model reads every lake file: a release measuring other genes is flagged."""
    import json
    import shutil

    import pandas as pd

    from l1000_assets.defs.lake.assets import landmark_profiles_valid
    from l1000_assets.lib.resources import LakeResource

    src = graph.root / "lake"
    shutil.copytree(src / "metadata", tmp_path / "lake" / "metadata")
    cell = graph.cells[0]
    (tmp_path / "lake" / "landmark_profiles" / f"cell_id={cell}").mkdir(parents=True)
    table = pq.read_table(src / "landmark_profiles" / f"cell_id={cell}" / "synthetic.parquet")
    pq.write_table(
        table, tmp_path / "lake" / "landmark_profiles" / f"cell_id={cell}" / "synthetic.parquet"
    )
    lake = LakeResource(root=str(tmp_path))
    assert landmark_profiles_valid(lake=lake).passed

    # Release "other": the same profiles (new ids) but its first landmark is another gene.
    genes = pd.read_parquet(src / "metadata" / "release=synthetic" / "genes.parquet")
    first = genes.index[genes["is_landmark"]][0]
    genes.loc[first, "gene_id"] = "999999"
    (tmp_path / "lake" / "metadata" / "release=other").mkdir()
    genes.to_parquet(tmp_path / "lake" / "metadata" / "release=other" / "genes.parquet")
    meta = dict(table.schema.metadata)
    key = next(k for k in meta if k.endswith(b"landmark_gene_ids"))
    ids = json.loads(meta[key])
    meta[key] = json.dumps(["999999", *ids[1:]]).encode()
    other = table.set_column(
        table.schema.get_field_index("inst_id"),
        "inst_id",
        pc.binary_join_element_wise(table["inst_id"], "-other", ""),
    )
    pq.write_table(
        other.replace_schema_metadata(meta),
        tmp_path / "lake" / "landmark_profiles" / f"cell_id={cell}" / "other.parquet",
    )
    result = landmark_profiles_valid(lake=lake)
    assert not result.passed
    assert "2 different landmark gene lists" in result.metadata["problems"].value


def test_a_level3_plate_named_level4_is_refused_unless_allowed(tmp_path, real_dir):
    """The real LJP005 plate (level 3 despite its file name) as a drop-in release."""
    from l1000_assets.definitions import defs
    from l1000_assets.lib.releases import ReleaseRegistry
    from l1000_assets.lib.resources import LakeResource

    incoming = tmp_path / "releases" / "incoming" / "LJP005"
    incoming.mkdir(parents=True)
    (incoming / "LJP005_A375_24H_level4_n377x978.gct").symlink_to(
        real_dir / "LJP005_A375_24H_level4_n377x978.gct"
    )
    definitions = defs()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("release", ["LJP005"])

    def run(selection, partition, config=None):
        return dg.materialize(
            [*definitions.assets, *definitions.asset_checks],
            selection=selection,
            partition_key=partition,
            instance=instance,
            resources={"lake": LakeResource(root=str(tmp_path)), "releases": ReleaseRegistry()},
            run_config={"ops": config or {}},
            raise_on_error=False,
        )

    assert run(["release_files", "release_metadata"], "LJP005").success
    refused = run(["landmark_profiles"], "A375")
    assert not refused.success
    failure = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"][0]
    message = str(failure.event_specific_data.error)
    assert "not level-4 z-scores" in message and "allow_non_zscores" in message
    assert not (tmp_path / "lake" / "landmark_profiles" / "cell_id=A375").exists()
    allowed = run(
        ["landmark_profiles"],
        "A375",
        {"landmark_profiles": {"config": {"allow_non_zscores": True}}},
    )
    assert allowed.success
    assert (
        pq.read_metadata(
            tmp_path / "lake" / "landmark_profiles" / "cell_id=A375" / "LJP005.parquet"
        ).num_rows
        == 351
    )
