"""Gene-set queries through Dagster, the sensor, the catalog and the command line, on the
small synthetic lake: the store and reference assets, a perturbagen's consensus found as
the top mimicker (and, swapped, the top reverser), refusals naming the file, the embedding
method, and the statistics on the read-across hits."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from l1000_assets.core.catalog.build import connect_read_only
from l1000_assets.core.connectivity.examples import consensus_sets, strongest_compounds
from l1000_assets.core.connectivity.gene_sets import write_gmt, write_grp
from l1000_assets.core.connectivity.store import SignatureStore
from l1000_assets.core.releases import reference as gene_table
from l1000_assets.lib.demo import ASSET_PARTITION_RANGE_END, ASSET_PARTITION_RANGE_START
from tests.defs.conftest import settled
from tests.defs.model.test_model_assets import train_split

pytestmark = pytest.mark.usefixtures("own_queries_folder")
L1000 = str(Path(sys.executable).parent / "l1000")
REFERENCE = {"ops": {"connectivity_reference": {"config": {"n_queries": 120}}}}


def meta(result, asset):
    return result.asset_materializations_for_node(asset)[0].metadata


@pytest.fixture(scope="module")
def built(lake_graph):
    graph = lake_graph
    result = graph.run(["connectivity_signatures", "connectivity_reference"], config=REFERENCE)
    assert result.success
    store = SignatureStore(graph.root / "lake" / "connectivity" / "signatures")
    return graph, result, store


def test_store_and_reference_assets(built):
    graph, result, store = built
    signatures = meta(result, "connectivity_signatures")
    # The package gene table's BING flags (7,367; GEO's release has 10,174).
    n_bing = int((gene_table.genes()["pr_is_bing"].astype(int) == 1).sum())
    assert signatures["genes"].value == n_bing and signatures["gene_space"].value == "bing"
    assert signatures["dagster/row_count"].value == len(store) > 500
    assert signatures["spilled_profiles"].value == 0
    reference = meta(result, "connectivity_reference")
    assert reference["reference_queries"].value == 120
    assert reference["store_version"].value == store.version


def evaluate_sensor(graph, cursor=None):
    from l1000_assets.defs.readacross.sensors import read_across_queries

    context = dg.build_sensor_context(
        instance=graph.instance, cursor=cursor, resources={"lake": graph.resources["lake"]}
    )
    return read_across_queries(context), context.cursor


def run_request(graph, request):
    names = [key.path[-1] for key in request.asset_selection]
    return graph.run(names, config=request.run_config, tags=request.tags, raise_on_error=False)


def test_sensor_routes_gene_sets_and_finds_the_consensus(built):
    graph, _, store = built
    queries = graph.root / "queries"
    queries.mkdir(exist_ok=True)
    pert = strongest_compounds(store, 1)[0]
    up, down = consensus_sets(store, pert, 100)
    write_gmt(queries / "mine.gmt", [("like_it", up, down), ("opposite", down, up)])
    pd.DataFrame(
        {"gene": [g.lower() for g in up[:40]] + down[:40], "direction": ["up"] * 40 + ["dn"] * 40}
    ).to_csv(queries / "table.csv", index=False)
    (queries / "broken.gmt").write_text("empty_up\tno genes here\n")
    for p in queries.iterdir():
        settled(p)

    requests, cursor = evaluate_sensor(graph)
    by_file = {r.tags["l1000/query_file"]: r for r in requests}
    assert set(by_file) == {"mine.gmt", "table.csv", "broken.gmt"}
    assert all(r.asset_selection == [dg.AssetKey("connectivity_results")] for r in requests)
    runs = {name: run_request(graph, r) for name, r in by_file.items()}
    assert runs["mine.gmt"].success and runs["table.csv"].success
    assert not runs["broken.gmt"].success
    failure = next(e for e in runs["broken.gmt"].all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert str(queries / "broken.gmt") in message and "set 'empty_up' has no genes" in message

    results = pd.read_parquet(graph.root / "lake" / "connectivity" / "results.parquet")

    # First by the score (NCS): the ranking is by tau, which against the tests' 120-query
    # reference saturates near +-100 for the few strongest hits (on the synthetic release a
    # second compound reaches tau 100 while the query's own perturbagen has 99.8), so the
    # perturbagen itself is asserted first by NCS and among the top 3 by tau.
    def first_by_ncs(rows, sign):
        return rows.loc[(sign * rows["ncs"]).idxmax(), "pert_id"]

    mine = results[results["query_file"] == "mine.gmt"]
    for name, direction, sign in (("like_it", "mimickers", 1), ("opposite", "reversers", -1)):
        rows = mine[(mine["query_name"] == name) & (mine["direction"] == direction)]
        assert first_by_ncs(rows, sign) == pert, (name, direction)
        assert pert in rows.loc[rows["rank"] <= 3, "pert_id"].tolist()
    table = results[results["query_file"] == "table.csv"]
    assert first_by_ncs(table[table["direction"] == "mimickers"], 1) == pert
    assert results["tau"].between(-100, 100).all()
    queries_table = pd.read_parquet(graph.root / "lake" / "connectivity" / "queries.parquet")
    refused = queries_table[queries_table["query_file"] == "broken.gmt"]
    assert "no genes" in refused["error"].iloc[0]

    again, cursor = evaluate_sensor(graph, cursor)
    assert isinstance(again, dg.SkipReason)
    # A new reference: every gene-set file is scored again, in one run.
    assert graph.run(
        ["connectivity_reference"],
        config={"ops": {"connectivity_reference": {"config": {"n_queries": 100, "seed": 2}}}},
    ).success
    rerun, cursor = evaluate_sensor(graph, cursor)
    assert len(rerun) == 1 and rerun[0].run_config["ops"]["connectivity_results"]["config"] == {
        "files": []
    }
    (queries / "broken.gmt").unlink()
    assert run_request(graph, rerun[0]).success


def test_catalog_views_and_macros(built):
    graph, _, store = built
    if not (graph.root / "lake" / "connectivity" / "results.parquet").exists():
        pytest.skip("needs the sensor round trip's results")
    assert graph.run(["warehouse"]).success
    pert = strongest_compounds(store, 1)[0]
    with connect_read_only(graph.root / "catalog" / "l1000.duckdb") as con:
        hits = con.execute(
            "SELECT pert_id, tau FROM connectivity_hits(?, k := ?, of_direction := ?)",
            ["like_it", 3, "mimickers"],
        ).fetchall()
        assert pert in [h[0] for h in hits] and all(-100 <= h[1] <= 100 for h in hits)
        # Ranked by tau: among the top 3 (see the sensor test on tau's saturation).
        mine = con.execute(
            "SELECT DISTINCT query_name FROM perturbagen_connectivity(?) WHERE rank <= 3",
            [pert],
        ).fetchall()
        assert {"like_it", "opposite"} <= {r[0] for r in mine}
        terms = con.execute(
            "SELECT term_kind, term, fdr, hits FROM enriched_terms(?, max_fdr := 1.0)",
            ["like_it"],
        ).fetchall()
        assert terms and all(0 <= t[2] <= 1 and t[3] for t in terms)
        counts = con.execute("SELECT count(*) FROM connectivity_queries").fetchall()[0][0]
        assert counts >= 4, con.execute(
            "SELECT query_file, query_name, error FROM connectivity_queries"
        ).fetchall()


def test_cli_query(built, tmp_path):
    graph, _, store = built
    pert = strongest_compounds(store, 1)[0]
    name = store.index.set_index("pert_id")["pert_iname"].loc[pert]
    name = name if isinstance(name, str) else name.iloc[0]
    up, down = consensus_sets(store, pert, 100)
    write_grp(tmp_path / "q_up.grp", up)
    write_grp(tmp_path / "q_dn.grp", down)
    # --method ncs: tau against the tests' small reference saturates for the strongest hits.
    base = [L1000, "query", "--data-root", str(graph.root), "--top", "5", "--method", "ncs"]
    out = subprocess.run(
        [
            *base,
            "--up",
            str(tmp_path / "q_up.grp"),
            "--down",
            str(tmp_path / "q_dn.grp"),
            "--enrich",
            "--out",
            str(tmp_path / "hits.parquet"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.split()[:3] == ["rank", "pert_id", "pert_iname"]
    )
    assert lines[header + 1].split()[:3] == ["1", pert, name]
    assert "up 100 valid" in out.stderr and "down 100 valid" in out.stderr
    assert "MOAs and targets enriched" in out.stdout
    hits = pd.read_parquet(tmp_path / "hits.parquet")
    assert hits["pert_id"].iloc[0] == pert and set(hits["direction"]) == {"mimickers"}

    swapped = subprocess.run(
        [
            *base,
            "--up",
            str(tmp_path / "q_dn.grp"),
            "--down",
            str(tmp_path / "q_up.grp"),
            "--reverse",
            "--method",
            "mwu",
            "--level",
            "cell",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert swapped.returncode == 0, swapped.stderr
    lines = swapped.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["rank", "pert_id"])
    assert lines[header + 1].split()[1] == pert
    assert "reversers by mwu" in swapped.stdout

    (tmp_path / "unknown.grp").write_text("NOT_A_GENE\nNOR_THIS\n")
    bad = subprocess.run(
        [*base, "--up", str(tmp_path / "unknown.grp")], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 1
    assert f"error: {tmp_path / 'unknown.grp'}: query 'unknown'" in bad.stderr
    assert "'NOT_A_GENE'" in bad.stderr
    cell = subprocess.run(
        [*base, "--up", str(tmp_path / "q_up.grp"), "--cell", "NOWHERE"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cell.returncode == 1 and "unknown cell line 'NOWHERE'" in cell.stderr


@pytest.fixture(scope="module")
def embedded(built):
    graph, _, store = built
    if not (graph.root / "models" / "embedding_model" / "all" / "card.json").exists():
        assert train_split(graph, "all").success  # the served model
    cells = {
        ASSET_PARTITION_RANGE_START: graph.cells[0],
        ASSET_PARTITION_RANGE_END: graph.cells[-1],
    }
    assert graph.run(["profile_embeddings"], tags=cells).success
    assert graph.run(["signature_embeddings", "perturbagen_embeddings"]).success
    return graph, store


def test_embedding_method_and_read_across_statistics(embedded, tmp_path):
    graph, store = embedded
    queries = graph.root / "queries"
    queries.mkdir(exist_ok=True)
    pert = strongest_compounds(store, 1)[0]
    up, down = consensus_sets(store, pert, 150)
    gmt = write_gmt(queries / "embedded.gmt", [("like_it_embedded", up, down)])
    result = graph.run(
        ["connectivity_results"],
        config={
            "ops": {
                "connectivity_results": {
                    "config": {"files": [str(gmt)], "method": "embedding", "direction": "mimickers"}
                }
            }
        },
    )
    assert result.success
    results = pd.read_parquet(graph.root / "lake" / "connectivity" / "results.parquet")
    mine = results[results["query_name"] == "like_it_embedded"]
    assert mine["similarity"].between(-1, 1).all() and mine["method"].eq("embedding").all()
    assert pert in mine["pert_id"].tolist()  # among the top 50 (it is the projection's own)

    # Profile read-across of the perturbagen's mean landmark profile, then its statistics.
    landmarks = store.genes["symbol"].iloc[store.landmark_rows].tolist()
    cols = np.flatnonzero(store.index["pert_id"].to_numpy() == pert)
    profile = store.read_z(cols, store.landmark_rows).mean(axis=0)
    pd.DataFrame({"gene": landmarks, "extract": profile}).to_csv(
        queries / "profile.csv", index=False
    )
    assert graph.run(
        ["read_across_results"],
        config={"ops": {"read_across_results": {"config": {"files": ["profile.csv"]}}}},
    ).success
    stats = graph.run(
        ["read_across_enrichment"],
        config={"ops": {"read_across_enrichment": {"config": {"prerank": True}}}},
    )
    assert stats.success
    table = pd.read_parquet(graph.root / "lake" / "connectivity" / "read_across_enrichment.parquet")
    mine = table[table["query_name"] == "extract"]
    assert set(mine["test"]) == {"top_n", "prerank"} and set(mine["source"]) == {"read_across"}
    moa = pd.read_parquet(
        graph.root / "lake" / "metadata" / "release=synthetic" / "perturbagens.parquet"
    ).set_index("pert_id")["moa"][pert]
    top_n = mine[(mine["test"] == "top_n") & (mine["term_kind"] == "moa")]
    # The profile's own perturbagen is the first hit, so each of its MOAs (a |-list) is a
    # term with that hit; whether its MOA is the most enriched is the model's property on
    # this release (the synthetic release's embedding does not group MOAs well), not tested.
    name = store.index.set_index("pert_id")["pert_iname"][pert].iloc[0]
    for term in moa.split("|"):
        row = top_n[top_n["term"] == term].iloc[0]
        assert name in list(row["hits"]) and 0 <= row["fdr"] <= 1
