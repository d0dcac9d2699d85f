"""The DuckDB catalog: one file of views and macros over the Parquet lake, from ``sql/``.

The catalog is rebuilt whole into a temporary file and renamed into place, so readers
never see a half-built catalog and the last good one survives a failed build.

The views over the lake follow the data root the catalog is opened in: each reads its files
under the session variable ``lake_dir`` when it is set, else under the lake the catalog was
built over. The catalog records where its lake lies relative to the catalog file
(``catalog_info``), and :func:`connect_read_only` sets ``lake_dir`` from that, so a data root
copied or moved whole (catalog and lake together) reads its own lake. Another DuckDB client
reads the lake where it was built unless told otherwise
(``SET VARIABLE lake_dir = '<data root>/lake'``). The embedding tables are copies, wherever
the file goes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.catalog.zscores import perturbagen_zscores
from l1000_assets.core.errors import L1000InputError

LAKE_PLACEHOLDER = "{{lake}}"
#: The session variable naming the lake directory the views read.
LAKE_VARIABLE = "lake_dir"
#: The table recording where the lake lies relative to the catalog file.
CATALOG_INFO = "catalog_info"
_LAKE_FROM_CATALOG = "lake_dir_from_catalog"
_CREATED = re.compile(
    r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:VIEW|TABLE)\s+(?P<name>[\w.]+)", re.IGNORECASE
)
_COMMENTED = re.compile(r"\s*COMMENT\s+ON\s+(?:VIEW|TABLE|COLUMN)\s+(?P<name>\w+)", re.IGNORECASE)
#: The perturbagen-level z-score means, handed to the SQL as a relation of this name.
ZSCORES_RELATION = "lake_perturbagen_zscores"


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
    lake_dir = Path(lake_dir).resolve()
    lake = f"coalesce(getvariable('{LAKE_VARIABLE}'), {sql_literal(str(lake_dir))})"
    try:
        relative = os.path.relpath(lake_dir, Path(db_path).resolve().parent)
    except ValueError:  # another drive (Windows): only the absolute path holds
        relative = None
    skipped: dict[str, str] = {}
    not_created: set[str] = set()
    n = 0
    with atomic_file(db_path) as tmp:
        # DuckDB's write-ahead log beside the temporary: removed whether the build succeeds
        # or fails (on a full disk the closing checkpoint fails and leaves it).
        wal = Path(f"{tmp}.wal")
        con = duckdb.connect(str(tmp))
        try:
            con.execute(f"CREATE TABLE {CATALOG_INFO} (key VARCHAR, value VARCHAR)")
            con.execute(
                f"INSERT INTO {CATALOG_INFO} VALUES (?, ?), ('lake_dir_at_build', ?)",
                [_LAKE_FROM_CATALOG, relative, str(lake_dir)],
            )
            # Inputs the SQL cannot compute well itself (core/catalog/zscores.py says why).
            con.register(
                ZSCORES_RELATION,
                perturbagen_zscores(
                    sorted(lake_dir.glob("zscore_signatures/cell_id=*/signatures.parquet"))
                ),
            )
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
                        if created := _CREATED.match(_strip_comments(query)):
                            not_created.add(created["name"].lower())
                    except duckdb.CatalogException as exc:
                        # A comment on a view skipped above is skipped with it.
                        target = _COMMENTED.match(_strip_comments(query))
                        if target is None or target["name"].lower() not in not_created:
                            raise L1000InputError(sql_file, f"{head}: {exc}") from exc
                        skipped[head] = "its view was skipped"
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


def connect_read_only(
    db_path: str | Path, lake_dir: str | Path | None = None
) -> duckdb.DuckDBPyConnection:
    """Open the catalog for queries (read-only: the catalog asset is the only writer).

    The views read the lake at ``lake_dir``; by default the lake where the catalog recorded
    it, relative to the catalog file (so a copied or moved data root reads its own lake).
    """
    path = Path(db_path)
    if not path.exists():
        raise L1000InputError(path, "catalog not found: materialize the warehouse asset first")
    con = duckdb.connect(str(path), read_only=True)
    try:
        lake = Path(lake_dir) if lake_dir is not None else _recorded_lake(con, path)
        if lake is not None:
            con.execute(f"SET VARIABLE {LAKE_VARIABLE} = ?", [str(lake.resolve())])
    except BaseException:
        con.close()
        raise
    return con


def _recorded_lake(con: duckdb.DuckDBPyConnection, db_path: Path) -> Path | None:
    """The lake the catalog recorded, relative to ``db_path``; None for a catalog built
    before it recorded one (its views read the lake where it was built)."""
    try:
        rows = con.execute(
            f"SELECT value FROM {CATALOG_INFO} WHERE key = ?", [_LAKE_FROM_CATALOG]
        ).fetchall()
    except duckdb.CatalogException:
        return None
    if not rows or rows[0][0] is None:
        return None
    return db_path.resolve().parent / rows[0][0]
