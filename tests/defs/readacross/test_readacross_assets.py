"""Embedding assets, the catalog macros, and read-across of a user's profiles through the
sensor and the CLI, on the small synthetic lake and a trained model."""

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from l1000_assets.core.catalog.build import connect_read_only
from l1000_assets.core.embeddings.vectors import read_embeddings
from l1000_assets.core.lake.read import landmark_matrix, read_profile_gene_ids
from tests.defs.conftest import PCA_MAP, settled

pytestmark = pytest.mark.usefixtures("own_queries_folder")

L1000 = str(Path(sys.executable).parent / "l1000")


def meta(result, asset):
    return result.asset_materializations_for_node(asset)[0].metadata


def known_query(graph) -> tuple[str, pd.DataFrame]:
    """The perturbagen with the most lake profiles, and the mean of its profiles as a
    genes-by-symbol CSV table (a synthetic profile of a known perturbagen)."""
    files = sorted((graph.root / "lake" / "landmark_profiles").glob("cell_id=*/*.parquet"))
    tables = [pq.read_table(f, columns=["pert_id", "pert_type", "landmarks"]) for f in files]
    perts = pd.concat([t.select(["pert_id", "pert_type"]).to_pandas() for t in tables])
    pert = perts[perts["pert_type"] == "trt_cp"]["pert_id"].value_counts().index[0]
    x = np.concatenate(
        [
            landmark_matrix(t)[t.column("pert_id").to_numpy(zero_copy_only=False) == pert]
            for t in tables
        ]
    )
    genes = pd.read_parquet(
        graph.root / "lake" / "metadata" / "release=synthetic" / "genes.parquet"
    )
    symbol = dict(zip(genes["gene_id"], genes["symbol"]))
    order = read_profile_gene_ids(files[0])
    table = pd.DataFrame({"gene": [symbol[g] for g in order], "my_extract": x.mean(axis=0)})
    return pert, table


def moa_of(graph, pert):
    perts = pd.read_parquet(
        graph.root / "lake" / "metadata" / "release=synthetic" / "perturbagens.parquet"
    )
    return perts.set_index("pert_id")["moa"][pert]


def test_embedding_assets_and_their_metadata(embedded):
    graph, results = embedded
    assert all(r.success for r in results.values())
    profiles = meta(results["profiles"], "profile_embeddings")
    n_lake = sum(
        pq.ParquetFile(f).metadata.num_rows
        for f in (graph.root / "lake" / "landmark_profiles").glob("*/*.parquet")
    )
    # Each cell-line partition counts its own rows; together the lake's.
    per_cell = {
        m.partition: m.metadata["dagster/row_count"].value
        for m in results["profiles"].asset_materializations_for_node("profile_embeddings")
    }
    assert set(per_cell) == set(graph.cells) and sum(per_cell.values()) == n_lake
    lake_dir = graph.root / "lake" / "landmark_profiles"
    for cell, n in per_cell.items():
        assert n == sum(pq.read_metadata(f).num_rows for f in lake_dir.glob(f"cell_id={cell}/*"))
    assert profiles["rows_in_run"].value == n_lake
    columns = {c.name: c for c in profiles["dagster/column_schema"].value.columns}
    assert columns["embedding"].type == "float32[32]" and columns["embedding"].description
    assert profiles["embedding_dim"].value == 32
    # Embeddings and read-across are the served model's: all, every perturbagen trained.
    card = (graph.root / "models" / "embedding_model" / "all" / "card.json").read_text()
    n_perts = json.loads(card)["n_train_perturbagens"]
    assert profiles["model_split"].value == "all"
    assert profiles["model_n_train_perturbagens"].value == n_perts
    read_across = meta(results["read_across"], "read_across_results")
    assert read_across["model_split"].value == "all"
    perts = meta(results["aggregates"], "perturbagen_embeddings")
    lake_perts = set()
    for f in (graph.root / "lake" / "landmark_profiles").glob("*/*.parquet"):
        lake_perts |= set(pq.read_table(f, columns=["pert_id"]).column("pert_id").to_pylist())
    assert perts["perturbagens"].value == len(lake_perts) > 50
    checks = {c.check_name: c.passed for c in results["aggregates"].get_asset_check_evaluations()}
    assert checks["perturbagen_embeddings_unit_length"]
    zscores = results["profiles"].asset_materializations_for_node("zscore_signatures")
    assert len(zscores) == len(graph.cells)
    assert (
        sum(m.metadata["dagster/row_count"].value for m in zscores)
        == meta(results["aggregates"], "signature_embeddings")["dagster/row_count"].value
    )
    for name, result in [
        ("zscore_signatures", "profiles"),
        ("signature_embeddings", "aggregates"),
        ("perturbagen_embeddings", "aggregates"),
        ("read_across_results", "read_across"),
    ]:
        schema = meta(results[result], name)["dagster/column_schema"].value
        assert all(c.description for c in schema.columns if c.name != "cell_id"), name
    by_type = perts["perturbagens_by_type"]  # small tables are tables, not Markdown
    assert isinstance(by_type, dg.TableMetadataValue) and by_type.records
    picture = meta(results["read_across"], "perturbagen_map")
    assert picture["map"].value.startswith("![perturbagen map](data:image/png;base64,")
    warehouse = meta(results["warehouse"], "warehouse")
    assert "similar_perturbagens" in warehouse["table_macros"].value
    with connect_read_only(graph.root / "catalog" / "l1000.duckdb") as con:
        genes = con.execute(
            "SELECT count(*) FROM perturbagen_embeddings WHERE pert_type = 'trt_sh.cgs'"
        ).fetchall()[0][0]
    assert genes > 0  # the catalog adds each shRNA gene's consensus rows to the lake's
    assert (
        warehouse["rows_perturbagen_embeddings"].value == perts["dagster/row_count"].value + genes
    )


def test_catalog_macros_match_numpy_on_the_trained_embeddings(embedded):
    graph, _ = embedded
    table, x = read_embeddings(
        graph.root / "lake" / "embeddings" / "perturbagens.parquet", ["pert_id", "cell_id"]
    )
    df = table.to_pandas()
    overall = df["cell_id"].isna().to_numpy()
    ids, x = df["pert_id"].to_numpy()[overall], x[overall]
    with connect_read_only(graph.root / "catalog" / "l1000.duckdb") as con:
        for i in (0, 11, 42):
            sims = x @ x[i]
            expected = [ids[j] for j in np.argsort(-sims) if j != i][:10]
            got = con.execute(
                "SELECT pert_id FROM similar_perturbagens(?, k := ?, shrna := 'hairpin')",
                [ids[i], 10],
            ).fetchall()
            assert [r[0] for r in got] == expected
            got = con.execute(
                "SELECT pert_id FROM nearest_to(?, k := ?, shrna := 'hairpin')",
                [x[i].tolist(), 10],
            ).fetchall()
            assert [r[0] for r in got] == [ids[i], *expected[:9]]


def evaluate_sensor(graph, cursor=None):
    from l1000_assets.defs.readacross.sensors import read_across_queries

    context = dg.build_sensor_context(
        instance=graph.instance, cursor=cursor, resources={"lake": graph.resources["lake"]}
    )
    result = read_across_queries(context)
    return result, context.cursor


def run_request(graph, request):
    config = {"ops": {**request.run_config["ops"], **PCA_MAP}}
    return graph.run(
        ["read_across_results", "perturbagen_map"],
        config=config,
        tags=request.tags,
        raise_on_error=False,
    )


def test_sensor_round_trip_ranks_the_known_perturbagen_first(embedded):
    graph, _ = embedded
    queries = graph.root / "queries"
    queries.mkdir(exist_ok=True)
    pert, table = known_query(graph)
    good = queries / "extract.csv"
    table.to_csv(good, index=False)
    bad = queries / "broken.tsv"
    table.iloc[:800].to_csv(bad, sep="\t", index=False)  # 178 landmark genes missing
    (queries / "notes.md").write_text("not a query")
    for p in queries.iterdir():
        settled(p)

    requests, cursor = evaluate_sensor(graph)
    assert sorted(r.tags["l1000/query_file"] for r in requests) == ["broken.tsv", "extract.csv"]
    runs = {r.tags["l1000/query_file"]: run_request(graph, r) for r in requests}
    assert runs["extract.csv"].success
    assert not runs["broken.tsv"].success
    failure = next(e for e in runs["broken.tsv"].all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error)
    assert str(bad) in message and "178 of 978 landmark genes missing" in message

    results = pd.read_parquet(graph.root / "lake" / "read_across" / "results.parquet")
    mine = results[results["query_file"] == "extract.csv"].sort_values("rank")
    assert mine["pert_id"].iloc[0] == pert
    assert mine["moa"].iloc[0] == moa_of(graph, pert)
    # The refused file has no results (other tests of the shared lake may have added theirs).
    assert "extract.csv" in set(results["query_file"]) and "broken.tsv" not in set(
        results["query_file"]
    )

    # The catalog's view reads the results as they are now (no rebuild needed).
    with connect_read_only(graph.root / "catalog" / "l1000.duckdb") as con:
        top = con.execute(
            "SELECT pert_id, moa FROM read_across_results WHERE query_id = ? AND rank = 1",
            ["my_extract"],
        ).fetchall()
        assert top == [(pert, moa_of(graph, pert))]
        enriched = con.execute(
            "SELECT moa, n_hits_moa, p_value FROM read_across_moa_enrichment "
            "WHERE query_id = ? ORDER BY p_value",
            ["my_extract"],
        ).fetchall()
        # The top hit's MOAs (a |-separated list in the new release) are among the terms
        # counted, each with a valid tail probability; whether the known perturbagen's MOA is
        # the most enriched is a property of the model on this release, not of the view.
        terms = {moa: (n, p) for moa, n, p in enriched}
        for moa in moa_of(graph, pert).split("|"):
            assert terms[moa][0] >= 1 and 0 < terms[moa][1] <= 1

    # Next tick: nothing new, the bad file is not tried again.
    again, cursor = evaluate_sensor(graph, cursor)
    assert isinstance(again, dg.SkipReason)
    # Fixed, it is picked up once more.
    table.to_csv(bad, sep="\t", index=False)
    settled(bad)
    fixed, cursor = evaluate_sensor(graph, cursor)
    assert [r.tags["l1000/query_file"] for r in fixed] == ["broken.tsv"]
    assert run_request(graph, fixed[0]).success
    picture = graph.run(["perturbagen_map"], config={"ops": PCA_MAP})
    # These two query profiles, and any that other tests of the shared lake ranked.
    assert meta(picture, "perturbagen_map")["query_profiles"].value >= 2


def test_cli_round_trip_and_bad_file(embedded, tmp_path):
    graph, _ = embedded
    pert, table = known_query(graph)
    path = tmp_path / "extract.tsv"
    table.to_csv(path, sep="\t", index=False)
    bad = tmp_path / "empty.csv"
    bad.write_text("")
    huge = tmp_path / "huge.tsv"  # finite, but a zero embedding and arbitrary hits
    table.assign(my_extract=table["my_extract"] * 1e30).to_csv(huge, sep="\t", index=False)
    out = subprocess.run(
        [
            L1000,
            "read-across",
            str(path),
            str(bad),
            str(huge),
            "--top",
            "5",
            "--data-root",
            str(graph.root),
            "--progress-from",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, out.stderr  # one of the two files was refused
    lines = out.stdout.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.split()[:3] == ["query_id", "rank", "similarity"]
    )
    first = lines[header + 1].split()
    assert first[:2] == ["my_extract", "1"] and first[3] == pert
    assert moa_of(graph, pert).split()[0] in lines[header + 1]
    assert f"error: {bad}: empty file" in out.stderr
    assert f"error: {huge}: 1 profile(s) with values beyond" in out.stderr
    assert "huge.tsv: top" not in out.stdout
    assert "978/978 landmark genes" in out.stderr
    assert "1/1 profiles (100%)" in out.stderr  # the progress indicator


def test_cli_ranks_without_tensorflow_writes_the_format_asked_and_answers_similar(
    embedded, tmp_path
):
    graph, _ = embedded
    model_dir = graph.root / "models" / "embedding_model" / "all"
    assert (model_dir / "embedding_weights.npz").exists()  # exported when the model was saved
    pert, table = known_query(graph)
    path = tmp_path / "extract.csv"
    table.iloc[3:].to_csv(path, index=False)  # three landmark genes missing
    outputs = {}
    for suffix in ("parquet", "json", "tsv"):
        out = subprocess.run(
            [
                L1000,
                "read-across",
                str(path),
                "--top",
                "5",
                "--data-root",
                str(graph.root),
                "--out",
                str(tmp_path / f"hits.{suffix}"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        assert "TensorFlow" not in out.stderr and "oneDNN" not in out.stderr
        outputs[suffix] = out
    genes = pd.read_parquet(
        graph.root / "lake" / "metadata" / "release=synthetic" / "genes.parquet"
    ).set_index("symbol")["gene_id"]
    first_missing = table["gene"].iloc[0]
    assert f"missing (set to 0): {genes[first_missing]} ({first_missing})" in outputs["tsv"].stderr
    hits = pd.read_parquet(tmp_path / "hits.parquet")
    assert hits["rank"].tolist() == [1, 2, 3, 4, 5] and hits["pert_id"].iloc[0] == pert
    assert pd.read_json(tmp_path / "hits.json")["pert_id"].tolist() == hits["pert_id"].tolist()
    assert (
        pd.read_csv(tmp_path / "hits.tsv", sep="\t")["pert_id"].tolist() == hits["pert_id"].tolist()
    )

    name = pd.read_parquet(
        graph.root / "lake" / "metadata" / "release=synthetic" / "perturbagens.parquet"
    ).set_index("pert_id")["pert_iname"][pert]
    out = subprocess.run(
        [
            L1000,
            "similar",
            name.upper(),
            "--top",
            "3",
            "--data-root",
            str(graph.root),
            "--out",
            str(tmp_path / "similar.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"{name} ({pert}): top 3 perturbagens over all cell lines" in out.stdout
    similar = pd.read_csv(tmp_path / "similar.csv")
    assert similar["rank"].tolist() == [1, 2, 3] and set(similar["query_pert_id"]) == {pert}
    out = subprocess.run(
        [L1000, "similar", name + "zz", "--data-root", str(graph.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and f"no perturbagen named '{name}zz'" in out.stderr
    assert f"{name} ({pert}, trt_cp)" in out.stderr  # the closest names
