"""The DuckDB catalog built from sql/ over a lake."""

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from l1000_assets.core.catalog.build import (
    build_catalog,
    connect_read_only,
    sql_literal,
)
from l1000_assets.core.errors import L1000InputError
from tests.conftest import REPO

SQL = REPO / "sql"
LAKE_VIEWS = {
    f"CREATE OR REPLACE VIEW {v} AS"
    for v in ("profiles", "instances", "perturbagens", "cell_lines", "genes")
}


def _lake(root, n=5):
    vec = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(n * 978, dtype=np.float32)), 978)
    d = root / "landmark_profiles" / "cell_id=A375"
    d.mkdir(parents=True)
    pq.write_table(
        pa.table(
            {"inst_id": [f"i{k}" for k in range(n)], "cell_id": ["A375"] * n, "landmarks": vec}
        ),
        d / "synthetic.parquet",
    )
    meta = root / "metadata" / "release=synthetic"
    meta.mkdir(parents=True)
    pq.write_table(pa.table({"inst_id": [f"i{k}" for k in range(n)]}), meta / "instances.parquet")
    pq.write_table(pa.table({"pert_id": ["p"]}), meta / "perturbagens.parquet")
    pq.write_table(pa.table({"cell_id": ["A375"]}), meta / "cell_lines.parquet")
    pq.write_table(pa.table({"gene_id": ["1"], "landmark_index": [0]}), meta / "genes.parquet")


def test_views_over_the_lake(tmp_path):
    lake = tmp_path / "it's a lake"  # a quote in the path must not break the SQL
    _lake(lake)
    report = build_catalog(tmp_path / "c.duckdb", SQL, lake)
    # Views of later stages (embeddings, evaluation) have no files in this lake yet.
    assert not LAKE_VIEWS & set(report.skipped)
    with connect_read_only(tmp_path / "c.duckdb") as con:
        assert con.execute("SELECT count(*) FROM profiles").fetchall() == [(5,)]
        kind = con.execute(
            "SELECT data_type FROM duckdb_columns() WHERE table_name='profiles' "
            "AND column_name='landmarks'"
        ).fetchall()
        assert kind == [("FLOAT[978]",)]
        sim = con.execute(
            "SELECT array_cosine_similarity(a.landmarks, a.landmarks) FROM profiles a LIMIT 1"
        ).fetchall()[0][0]
        assert sim == pytest.approx(1.0)
        assert con.execute("SELECT release FROM genes").fetchall() == [("synthetic",)]
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE x (a INT)")  # read-only


def test_views_without_files_are_skipped(tmp_path):
    (tmp_path / "lake").mkdir()
    report = build_catalog(tmp_path / "c.duckdb", SQL, tmp_path / "lake")
    assert LAKE_VIEWS <= set(report.skipped)
    assert (tmp_path / "c.duckdb").exists()


def test_bad_sql_names_the_file_and_keeps_the_old_catalog(tmp_path):
    _lake(tmp_path / "lake")
    build_catalog(tmp_path / "c.duckdb", SQL, tmp_path / "lake")
    before = (tmp_path / "c.duckdb").read_bytes()
    bad = tmp_path / "sql"
    bad.mkdir()
    (bad / "010_bad.sql").write_text("CREATE VIEW oops AS SELECT * FROM nowhere_table;")
    with pytest.raises(L1000InputError, match=r"010_bad\.sql: CREATE VIEW oops"):
        build_catalog(tmp_path / "c.duckdb", bad, tmp_path / "lake")
    assert (tmp_path / "c.duckdb").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.duckdb", "lake", "sql"]


def test_sql_literal():
    assert sql_literal("a'b") == "'a''b'"
