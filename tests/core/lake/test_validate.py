"""Lake-wide checks: repeated inst_ids across files, lake files against the metadata."""

import pyarrow as pa
import pyarrow.parquet as pq

from l1000_assets.core.lake.validate import duplicate_inst_ids, metadata_mismatch


def _ids(path, ids):
    pq.write_table(pa.table({"inst_id": ids}), path)
    return path


def test_duplicates_are_counted_across_files_with_examples(tmp_path):
    a = _ids(tmp_path / "a.parquet", ["x1", "x2", "x3"])
    b = _ids(tmp_path / "b.parquet", ["x3", "x4", "x2", "x2"])
    found = duplicate_inst_ids([a, b])
    assert (found.n_rows, found.n_duplicates, found.examples) == (7, 3, ["x2", "x3"])
    clean = duplicate_inst_ids([a])
    assert (clean.n_rows, clean.n_duplicates, clean.examples) == (3, 0, [])
    assert duplicate_inst_ids([]).n_rows == 0


def test_metadata_mismatch_both_ways_ignores_controls_and_other_cell_lines(tmp_path):
    lake = _ids(tmp_path / "lake.parquet", ["p1", "p2", "stray"])
    instances = tmp_path / "instances.parquet"
    pq.write_table(
        pa.table(
            {
                "inst_id": ["p1", "p2", "p3", "ctl", "other"],
                "profile_class": ["compound", "genetic", "compound", "control", "compound"],
                "cell_id": ["A375", "A375", "A375", "A375", "MCF7"],
            }
        ),
        instances,
    )
    found = metadata_mismatch("r1", [lake], instances, ["A375"])
    assert (found.n_without_metadata, found.examples_without_metadata) == (1, ["stray"])
    assert (found.n_without_profile, found.examples_without_profile) == (1, ["p3"])
    assert found.problems() == [
        "r1: 1 profiles without metadata: 'stray'",
        "r1: 1 metadata rows without profile: 'p3'",
    ]
    lake_ok = _ids(tmp_path / "ok.parquet", ["p1", "p2", "p3"])
    assert metadata_mismatch("r1", [lake_ok], instances, ["A375"]).problems() == []
