"""The DuckDB catalog built from sql/ over a lake."""

import shutil
import signal
import subprocess
import sys
from pathlib import Path

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


def test_a_failed_build_leaves_no_temporary_and_no_write_ahead_log(tmp_path):
    """A build that fails after writing (a full disk, bad SQL) removes its temporary file
    and DuckDB's write-ahead log beside it; the old catalog stays."""
    _lake(tmp_path / "lake")
    build_catalog(tmp_path / "c.duckdb", SQL, tmp_path / "lake")
    before = (tmp_path / "c.duckdb").read_bytes()
    bad = tmp_path / "sql"
    bad.mkdir()
    # No checkpoint when the connection closes: what was written stays in the WAL, as when
    # the checkpoint itself fails on a full disk.
    (bad / "010_write.sql").write_text(
        "PRAGMA disable_checkpoint_on_shutdown;\n"
        "CREATE TABLE big AS SELECT range AS i FROM range(100000);\n"
    )
    (bad / "020_bad.sql").write_text("CREATE VIEW oops AS SELECT * FROM nowhere_table;")
    with pytest.raises(L1000InputError, match=r"020_bad\.sql"):
        build_catalog(tmp_path / "c.duckdb", bad, tmp_path / "lake")
    assert (tmp_path / "c.duckdb").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.duckdb", "lake", "sql"]


def test_a_killed_build_leaves_nothing_after_the_next_one(tmp_path):
    """A build killed mid-way (kill -9) leaves its temporary and write-ahead log; the next
    build removes both."""
    _lake(tmp_path / "lake")
    db = tmp_path / "catalog" / "l1000.duckdb"
    hold = (
        "import sys, time, duckdb\n"
        "from l1000_assets.core.atomic import atomic_file\n"
        "block = atomic_file(sys.argv[1])\n"
        "tmp = block.__enter__()\n"
        "con = duckdb.connect(str(tmp))\n"
        "con.execute('CREATE TABLE t AS SELECT range AS i FROM range(100000)')\n"
        "print(tmp, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, str(db)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    tmp = Path(proc.stdout.readline().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp.exists() and Path(f"{tmp}.wal").exists()
    build_catalog(db, SQL, tmp_path / "lake")
    assert sorted(p.name for p in db.parent.iterdir()) == ["l1000.duckdb"]


def test_the_catalog_follows_a_copied_or_moved_data_root(tmp_path):
    """Built as the warehouse asset builds it (<root>/catalog over <root>/lake), the catalog
    reads the lake of the data root it is opened in: a copy reads its own lake, a moved root
    reads where it now is."""
    root = tmp_path / "data"
    _lake(root / "lake", n=5)
    build_catalog(root / "catalog" / "l1000.duckdb", SQL, root / "lake")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    shutil.rmtree(copy / "lake")
    _lake(copy / "lake", n=3)  # the copy's lake now differs from the original's
    with connect_read_only(copy / "catalog" / "l1000.duckdb") as con:
        assert con.execute("SELECT count(*) FROM profiles").fetchall() == [(3,)]
        assert con.execute("SELECT count(*) FROM instances").fetchall() == [(3,)]
    moved = tmp_path / "elsewhere" / "data"
    moved.parent.mkdir()
    root.rename(moved)
    with connect_read_only(moved / "catalog" / "l1000.duckdb") as con:
        assert con.execute("SELECT count(*) FROM profiles").fetchall() == [(5,)]
        assert con.execute("SELECT release FROM genes").fetchall() == [("synthetic",)]
    # Another DuckDB client is told where the lake now is.
    with duckdb.connect(str(moved / "catalog" / "l1000.duckdb"), read_only=True) as con:
        con.execute("SET VARIABLE lake_dir = ?", [str(moved / "lake")])
        assert con.execute("SELECT count(*) FROM profiles").fetchall() == [(5,)]
