"""The DuckDB catalog: one file of views and macros over the Parquet lake, from ``sql/``.

The catalog is rebuilt whole into a temporary file and renamed into place, so readers
never see a half-built catalog and the last good one survives a failed build.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.errors import L1000InputError

LAKE_PLACEHOLDER = "{{lake}}"


def sql_literal(value: str) -> str:
    """A DuckDB string literal for ``value`` (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class CatalogReport:
    path: Path
    statements: int
    skipped: dict[str, str]  # statement head -> reason (files not there yet)


def build_catalog(db_path: str | Path, sql_dir: str | Path, lake_dir: str | Path) -> CatalogReport:
    """Run every ``sql_dir/*.sql`` file (in name order) into a fresh DuckDB file.

    A view over lake files that do not exist yet is skipped and reported; any other SQL
    error raises :class:`L1000InputError` naming the SQL file.
    """
    sql_files = sorted(Path(sql_dir).glob("*.sql"))
    if not sql_files:
        raise L1000InputError(sql_dir, "no .sql files")
    lake = sql_literal(str(Path(lake_dir).resolve()))
    skipped: dict[str, str] = {}
    n = 0
    with atomic_file(db_path) as tmp:
        # DuckDB's write-ahead log beside the temporary: removed whether the build succeeds
        # or fails (on a full disk the closing checkpoint fails and leaves it).
        wal = Path(f"{tmp}.wal")
        con = duckdb.connect(str(tmp))
        try:
            for sql_file in sql_files:
                text = sql_file.read_text().replace(LAKE_PLACEHOLDER, lake)
                for statement in duckdb.extract_statements(text):
                    query = statement.query.strip()
                    head = " ".join(_strip_comments(query).split()[:6])
                    try:
                        con.execute(query)
                        n += 1
                    except duckdb.IOException as exc:
                        if "No files found" not in str(exc):
                            raise L1000InputError(sql_file, f"{head}: {exc}") from exc
                        skipped[head] = "no files in the lake yet"
                    except duckdb.Error as exc:
                        raise L1000InputError(sql_file, f"{head}: {exc}") from exc
            con.execute("CHECKPOINT")
        finally:
            try:
                con.close()
            finally:
                wal.unlink(missing_ok=True)
    return CatalogReport(Path(db_path), n, skipped)


def _strip_comments(query: str) -> str:
    return "\n".join(line for line in query.splitlines() if not line.strip().startswith("--"))


def connect_read_only(db_path: str | Path) -> duckdb.DuckDBPyConnection:
    """Open the catalog for queries (read-only: the catalog asset is the only writer)."""
    path = Path(db_path)
    if not path.exists():
        raise L1000InputError(path, "catalog not found: materialize the warehouse asset first")
    return duckdb.connect(str(path), read_only=True)
