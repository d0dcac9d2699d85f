"""The DuckDB catalog over the lake."""

from pathlib import Path

import dagster as dg

from l1000_assets.core.catalog.build import build_catalog, connect_read_only
from l1000_assets.lib.keys import (
    ALL_PARTITIONS,
    CATALOG_GROUP,
    COMPOUND_FINGERPRINTS,
    LANDMARK_PROFILES,
    PERTURBAGEN_EMBEDDINGS,
    PROFILE_EMBEDDINGS,
    READ_ACROSS_RESULTS,
    RELEASE_METADATA,
    SIGNATURE_EMBEDDINGS,
    WAREHOUSE,
    ZSCORE_SIGNATURES,
)
from l1000_assets.lib.lake import synthetic_releases
from l1000_assets.lib.resources import LakeResource

SQL_DIR = Path(__file__).resolve().parents[3] / "sql"
EXPECTED_VIEWS = ("profiles", "instances", "perturbagens", "genes", "cell_lines")
EMBEDDING_TABLES = (
    "profile_embeddings",
    "signature_embeddings",
    "perturbagen_embeddings",
    "perturbagen_annotations",
    "compound_fingerprints",
)


@dg.asset(
    key=WAREHOUSE,
    group_name=CATALOG_GROUP,
    deps=[
        dg.AssetDep(LANDMARK_PROFILES, partition_mapping=ALL_PARTITIONS),
        dg.AssetDep(RELEASE_METADATA, partition_mapping=ALL_PARTITIONS),
        dg.AssetDep(PROFILE_EMBEDDINGS, partition_mapping=ALL_PARTITIONS),
        dg.AssetDep(ZSCORE_SIGNATURES, partition_mapping=ALL_PARTITIONS),
        SIGNATURE_EMBEDDINGS,
        PERTURBAGEN_EMBEDDINGS,
        READ_ACROSS_RESULTS,
        COMPOUND_FINGERPRINTS,
    ],
    kinds={"duckdb", "sql"},
    pool="duckdb",
    description=(
        "One DuckDB file with views over the lake (profiles, instances, perturbagens, genes, "
        "cell_lines, zscore_signatures, read_across_results), the embeddings as FLOAT[d] "
        "tables, and the read-across macros in sql/. The only writer of that file; rebuilt "
        "whole and swapped in atomically."
    ),
)
def warehouse(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    report = build_catalog(lake.catalog_path, SQL_DIR, lake.path / "lake")
    for head, reason in report.skipped.items():
        context.log.warning(f"skipped {head!r}: {reason}")
    with connect_read_only(lake.catalog_path, lake.path / "lake") as con:
        views = [
            r[0]
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1"
            ).fetchall()
        ]
        counts = {
            v: con.execute(f'SELECT count(*) FROM "{v}"').fetchall()[0][0]
            for v in views
            if v in EXPECTED_VIEWS
        }
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT internal ORDER BY 1"
            ).fetchall()
        ]
        counts.update(
            {
                t: con.execute(f'SELECT count(*) FROM "{t}"').fetchall()[0][0]
                for t in tables
                if t in EMBEDDING_TABLES
            }
        )
        macros = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT function_name FROM duckdb_functions() WHERE NOT internal "
                "AND function_type = 'table_macro' ORDER BY 1"
            ).fetchall()
        ]
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(lake.catalog_path)),
            "views": ", ".join(views),
            "tables": ", ".join(tables),
            "table_macros": ", ".join(macros),
            **{f"rows_{v}": int(n) for v, n in counts.items()},
            "skipped": ", ".join(report.skipped) or "none",
            "synthetic_releases": ", ".join(synthetic_releases(lake)) or "none",
            "open_with": dg.MetadataValue.md(
                f"```sql\n-- duckdb -readonly {lake.catalog_path}\n-- (the data root moved or "
                "copied: SET VARIABLE lake_dir = '<data root>/lake';)\nSELECT cell_id, count(*) "
                "FROM profiles GROUP BY 1;\nSELECT * FROM similar_perturbagens('<pert_id or "
                "name>', k := 10);\n```"
            ),
        }
    )


@dg.asset_check(
    asset=WAREHOUSE,
    blocking=True,
    description="Every lake view exists and the profiles view has 978-wide vectors.",
)
def warehouse_views(lake: LakeResource) -> dg.AssetCheckResult:
    with connect_read_only(lake.catalog_path, lake.path / "lake") as con:
        views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
        missing = [v for v in EXPECTED_VIEWS if v not in views]
        width = None
        if "profiles" in views:
            width = con.execute(
                "SELECT data_type FROM duckdb_columns() "
                "WHERE table_name = 'profiles' AND column_name = 'landmarks'"
            ).fetchall()[0][0]
    return dg.AssetCheckResult(
        passed=not missing and width == "FLOAT[978]",
        metadata={"missing_views": ", ".join(missing) or "none", "landmarks_type": str(width)},
    )
