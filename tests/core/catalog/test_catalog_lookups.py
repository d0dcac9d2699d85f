"""What a user meets first in the catalog: names in any case, clear errors with close
matches, signatures by perturbagen, cell line, dose and time in any spelling of the units,
plain lists as query vectors, comments on everything, helpers kept apart, one column order,
the perturbagen-level z-score baseline and shRNAs collapsed to their gene."""

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from l1000_assets.core.catalog.build import connect_read_only
from l1000_assets.core.embeddings.vectors import read_embeddings
from tests.core.catalog.conftest import DIM


@pytest.fixture(scope="module")
def con(catalog):
    db, _ = catalog
    with connect_read_only(db) as con:
        yield con


def rows(con, sql, params=()):
    return con.execute(sql, list(params)).df()


def a_compound(con):
    """A compound with signatures at 10 µM and 24 h, and its first such signature."""
    return con.execute(
        "SELECT pert_id, pert_iname, cell_id, sig_id FROM signature_embeddings "
        "WHERE pert_type = 'trt_cp' AND pert_dose = 10 AND pert_time = 24 "
        "ORDER BY sig_id LIMIT 1"
    ).fetchall()[0]


def test_names_in_any_case(con):
    pert_id, name, cell, _ = a_compound(con)
    exact = rows(con, "SELECT * FROM similar_perturbagens(?, k := 5, in_cell := ?)", [name, cell])
    assert len(exact) == 5
    for spelling in (name.upper(), f"  {name.title()} ", pert_id.lower()):
        again = rows(
            con,
            "SELECT * FROM similar_perturbagens(?, k := 5, in_cell := ?)",
            [spelling, cell.lower()],
        )
        pd.testing.assert_frame_equal(again, exact)
    resolved = rows(con, "SELECT * FROM resolve_perturbagen(?)", [name.upper()])
    assert resolved[["pert_id", "matched_by"]].values.tolist() == [[pert_id, "pert_iname"]]
    assert rows(con, "SELECT * FROM resolve_perturbagen(?)", [pert_id.lower()])[
        "matched_by"
    ].tolist() == ["pert_id"]


def test_unknown_names_are_errors_with_close_matches(con):
    pert_id, name, cell, _ = a_compound(con)
    typo = name[:-1] + ("x" if name[-1] != "x" else "y")
    with pytest.raises(duckdb.InvalidInputException, match="closest: .*") as err:
        con.execute("SELECT * FROM similar_perturbagens(?)", [typo]).fetchall()
    assert f"no perturbagen named '{typo}'" in str(err.value)
    assert f"{name} ({pert_id}, trt_cp)" in str(err.value)  # the name meant is offered
    with pytest.raises(duckdb.InvalidInputException, match="perturbagen name is NULL"):
        con.execute("SELECT * FROM resolve_perturbagen(?)", [None]).fetchall()
    with pytest.raises(duckdb.InvalidInputException, match=f"no cell line 'nowhere'.*{cell}"):
        con.execute(
            "SELECT * FROM similar_perturbagens(?, in_cell := ?)", [name, "nowhere"]
        ).fetchall()
    with pytest.raises(duckdb.InvalidInputException, match="no perturbagen type 'trt_xx'"):
        con.execute("SELECT * FROM similar_perturbagens(?, of_type := ?)", [name, "trt_xx"])
    # Known, but not profiled in that cell line: say where it was.
    others = con.execute(
        "SELECT DISTINCT cell_id FROM perturbagen_embeddings WHERE cell_id IS NOT NULL "
        "AND cell_id NOT IN (SELECT cell_id FROM perturbagen_embeddings "
        "WHERE pert_id = ? AND cell_id IS NOT NULL) ORDER BY 1",
        [pert_id],
    ).fetchall()
    if others:
        with pytest.raises(duckdb.InvalidInputException, match=f"its cell lines: .*{cell}"):
            con.execute(
                "SELECT * FROM similar_perturbagens(?, in_cell := ?)", [name, others[0][0]]
            ).fetchall()


@pytest.mark.parametrize(
    "dose", [10, 10.0, "10uM", "10 µM", "10 μM", "10 um", "10UM", "0.01 mM", "10000 nM"]
)
@pytest.mark.parametrize("time", [24, "24h", "24 H", "24 hours", "1 day"])
def test_signatures_by_name_cell_dose_and_time(con, dose, time):
    pert_id, name, cell, sig_id = a_compound(con)
    found = rows(
        con,
        "SELECT * FROM find_signatures(?, in_cell := ?, at_dose := ?, at_time := ?)",
        [name.upper(), cell.lower(), dose, time],
    )
    assert found["sig_id"].tolist() == [sig_id]
    assert list(found.columns[:5]) == ["sig_id", "pert_id", "pert_iname", "pert_type", "cell_id"]


def test_signature_names_in_any_spelling(con):
    pert_id, name, cell, sig_id = a_compound(con)
    canonical = rows(con, "SELECT * FROM similar_signatures(?, k := 5)", [sig_id])
    assert len(canonical) == 5 and set(canonical["query_sig_id"]) == {sig_id}
    for spelling in (
        sig_id.lower(),
        f"{cell.lower()}:{name}:10uM:24h",
        f"{cell}:{pert_id}:10 um:24 h",
        f"{cell}:{name.upper()}:10000 nM:1 day",
    ):
        pd.testing.assert_frame_equal(
            rows(con, "SELECT * FROM similar_signatures(?, k := 5)", [spelling]), canonical
        )
    z = rows(con, "SELECT * FROM similar_zscore_signatures(?, k := 3)", [f"{cell}:{name}:10uM:24h"])
    assert set(z["query_sig_id"]) == {sig_id}
    with pytest.raises(duckdb.InvalidInputException, match=f"no signature .*closest: {sig_id}"):
        con.execute("SELECT * FROM similar_signatures(?)", [f"{cell}:{name}:3uM:24h"]).fetchall()
    with pytest.raises(duckdb.InvalidInputException, match="at_dose ten: not a number"):
        con.execute("SELECT * FROM find_signatures(?, at_dose := 'ten')", [name]).fetchall()


def test_query_vectors_are_plain_lists_and_never_null(con):
    v = np.random.default_rng(0).normal(size=DIM)
    v /= np.linalg.norm(v)
    typed = rows(con, f"SELECT * FROM nearest_to(?::FLOAT[{DIM}], k := 7)", [v.tolist()])
    plain = rows(con, "SELECT * FROM nearest_to(?, k := 7)", [v.tolist()])
    assert plain["pert_id"].tolist() == typed["pert_id"].tolist() and len(plain) == 7
    np.testing.assert_allclose(plain["similarity"], typed["similarity"], rtol=1e-5)
    literal = rows(con, f"SELECT * FROM nearest_to([{', '.join(map(str, v))}], k := 7)")
    assert literal["pert_id"].tolist() == typed["pert_id"].tolist()
    for macro in ("nearest_to", "nearest_signatures"):
        with pytest.raises(duckdb.InvalidInputException, match="the query vector is NULL"):
            con.execute(f"SELECT * FROM {macro}(?)", [None]).fetchall()
        # Whichever check comes first: the macro's, or DuckDB's own.
        wrong = (
            f"(has 3 values; the embeddings have {DIM}|left length '{DIM}' and right length '3')"
        )
        with pytest.raises(duckdb.InvalidInputException, match=wrong):
            con.execute(f"SELECT * FROM {macro}(?)", [[0.1, 0.2, 0.3]]).fetchall()
    assert len(rows(con, "SELECT * FROM nearest_signatures(?, k := 4)", [v.tolist()])) == 4


def test_everything_a_user_reads_is_commented_and_helpers_are_internal(con):
    guide = rows(con, "SELECT * FROM catalog_guide")
    assert guide["comment"].notna().all(), guide[guide["comment"].isna()]
    macros = set(guide.loc[guide["kind"] == "macro", "name"])
    assert {
        "similar_perturbagens",
        "similar_zscore_perturbagens",
        "find_signatures",
        "resolve_perturbagen",
        "nearest_to",
        "moa_enrichment",
    } <= macros
    main = {
        r[0]
        for r in con.execute(
            "SELECT function_name FROM duckdb_functions() WHERE schema_name = 'main' "
            "AND database_name = current_database()"
        ).fetchall()
    }
    for helper in ("hypergeometric_sf", "log_choose", "known_annotation"):
        assert helper not in main
        assert con.execute(
            "SELECT comment FROM duckdb_functions() WHERE schema_name = 'internal' "
            "AND function_name = ?",
            [helper],
        ).fetchall()[0][0]
    tables = [
        "perturbagen_annotations",
        "profile_embeddings",
        "signature_embeddings",
        "perturbagen_embeddings",
        "perturbagen_zscores",
    ]
    columns = rows(
        con,
        "SELECT table_name, column_name, comment FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'main' "
        "AND list_contains(?, table_name)",
        [tables],
    )
    assert set(columns["table_name"]) == set(tables)
    missing = columns[columns["comment"].isna()]
    assert missing.empty, missing


CANONICAL_ORDER = [
    "query_pert_id",
    "query_pert_iname",
    "query_sig_id",
    "rank",
    "similarity",
    "sig_id",
    "pert_id",
    "pert_iname",
    "pert_type",
    "cell_id",
    "pert_dose",
    "pert_dose_unit",
    "pert_time",
    "pert_time_unit",
    "n_replicates",
    "moa",
    "target",
]


def test_macros_share_one_column_order(con):
    _, name, _, sig_id = a_compound(con)
    vector = [0.25] * DIM
    calls = {
        "nearest_to": ("SELECT * FROM nearest_to(?, k := 3)", [vector]),
        "similar_perturbagens": ("SELECT * FROM similar_perturbagens(?, k := 3)", [name]),
        "similar_zscore_perturbagens": (
            "SELECT * FROM similar_zscore_perturbagens(?, k := 3)",
            [name],
        ),
        "nearest_signatures": ("SELECT * FROM nearest_signatures(?, k := 3)", [vector]),
        "similar_signatures": ("SELECT * FROM similar_signatures(?, k := 3)", [sig_id]),
        "similar_zscore_signatures": (
            "SELECT * FROM similar_zscore_signatures(?, k := 3)",
            [sig_id],
        ),
    }
    for macro, (sql, params) in calls.items():
        columns = list(rows(con, sql, params).columns)
        assert set(columns) <= set(CANONICAL_ORDER), macro
        assert columns == sorted(columns, key=CANONICAL_ORDER.index), (macro, columns)
        assert {"rank", "similarity", "pert_id", "pert_iname", "moa", "target"} <= set(columns)


def test_perturbagen_level_zscore_baseline_is_the_cosine_of_mean_signatures(con, catalog):
    _, lake = catalog
    z = pd.concat(
        pq.read_table(f).to_pandas()
        for f in sorted((lake / "zscore_signatures").glob("*/*.parquet"))
    )
    means = {
        pert: np.mean(np.stack(group["signature"].to_numpy()), axis=0)
        for pert, group in z[z["pert_type"] != "trt_sh"].groupby("pert_id")
    }
    ids = sorted(means)
    x = np.stack([means[p] for p in ids]).astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    query = ids[3]
    got = rows(
        con,
        "SELECT pert_id, similarity FROM similar_zscore_perturbagens(?, k := 8, of_type := ?)",
        [query, None],
    )
    sims = x @ x[ids.index(query)]
    # Candidates: every perturbagen but the hairpins (collapsed to their genes, which join in).
    genes = rows(con, "SELECT pert_id FROM perturbagen_zscores WHERE pert_type = 'trt_sh.cgs'")
    compound_hits = got[~got["pert_id"].isin(genes["pert_id"])]
    order = [ids[i] for i in np.argsort(-sims) if ids[i] != query]
    assert compound_hits["pert_id"].tolist() == [
        p for p in order if p in set(compound_hits["pert_id"])
    ]
    expected = {ids[i]: sims[i] for i in range(len(ids))}
    np.testing.assert_allclose(
        compound_hits["similarity"], [expected[p] for p in compound_hits["pert_id"]], rtol=1e-4
    )
    # Over all cell lines, the mean of every signature of the perturbagen.
    stored = con.execute(
        "SELECT zscores, n_signatures FROM perturbagen_zscores "
        "WHERE pert_id = ? AND cell_id IS NULL",
        [query],
    ).fetchall()[0]
    np.testing.assert_allclose(stored[0], means[query], rtol=1e-5, atol=1e-6)
    assert stored[1] == (z["pert_id"] == query).sum()


def test_shrnas_collapse_to_their_gene(con, catalog):
    _, lake = catalog
    meta, x = read_embeddings(
        lake / "embeddings" / "perturbagens.parquet",
        ["pert_id", "pert_iname", "pert_type", "cell_id"],
    )
    df = meta.to_pandas()
    hairpins = df[(df["pert_type"] == "trt_sh") & df["cell_id"].isna()]
    gene, group = next(iter(hairpins.groupby("pert_iname")))
    mean = x[group.index].mean(axis=0)
    stored = con.execute(
        "SELECT pert_id, embedding, n_profiles FROM perturbagen_embeddings "
        "WHERE pert_type = 'trt_sh.cgs' AND pert_iname = ? AND cell_id IS NULL",
        [gene],
    ).fetchall()
    assert stored[0][0] == f"CGS-{gene}"
    np.testing.assert_allclose(stored[0][1], mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)
    _, name, _, _ = a_compound(con)
    by_gene = rows(con, "SELECT * FROM similar_perturbagens(?, k := 500)", [name])
    assert "trt_sh" not in set(by_gene["pert_type"]) and "trt_sh.cgs" in set(by_gene["pert_type"])
    by_hairpin = rows(
        con, "SELECT * FROM similar_perturbagens(?, k := 500, shrna := 'hairpin')", [name]
    )
    assert "trt_sh.cgs" not in set(by_hairpin["pert_type"]) and "trt_sh" in set(
        by_hairpin["pert_type"]
    )
    genes_only = rows(
        con, "SELECT * FROM similar_perturbagens(?, k := 5, of_type := 'TRT_SH')", [name]
    )
    assert set(genes_only["pert_type"]) == {"trt_sh.cgs"}
    # A gene's name asks with its consensus signature (and its cDNA, if any), not each hairpin.
    asked = rows(con, "SELECT DISTINCT query_pert_id FROM similar_perturbagens(?, k := 3)", [gene])
    assert f"CGS-{gene}" in set(asked["query_pert_id"])
    assert not set(asked["query_pert_id"]) & set(group["pert_id"])
