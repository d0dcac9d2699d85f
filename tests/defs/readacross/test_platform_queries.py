"""Read-across of other platforms' files (RNA-seq counts, TempO-Seq panels, DE tables)
through the CLI and the asset, on experiments rendered from the small synthetic lake's own
world, with the served model."""

import json
import subprocess

import pandas as pd
import pytest

from l1000_assets.lib.demo import ASSET_PARTITION_RANGE_END, ASSET_PARTITION_RANGE_START
from tests.defs.model.test_model_assets import train_split
from tests.defs.readacross.test_readacross_assets import L1000, known_query


@pytest.fixture(scope="module")
def embedded(lake_graph):
    """The served model and the perturbagen embeddings. The model's quality check is not
    what this module tests: its verdict does not stop the run (raise_on_error=False)."""
    graph = lake_graph
    trained = train_split(graph, "all", raise_on_error=False)
    assert trained.asset_materializations_for_node("embedding_model")
    cells = {
        ASSET_PARTITION_RANGE_START: graph.cells[0],
        ASSET_PARTITION_RANGE_END: graph.cells[-1],
    }
    assert graph.run(["profile_embeddings", "zscore_signatures"], tags=cells).success
    assert graph.run(["signature_embeddings", "perturbagen_embeddings"]).success
    return graph, {}


def rendered_experiment(graph, pert, tmp_path):
    """An RNA-seq experiment of ``pert`` rendered from the lake's synthetic world: a
    whole-transcriptome counts matrix by symbol, its sample sheet, a DESeq2-shaped table and
    a 500-landmark TempO-Seq panel by probe."""
    from l1000_assets.core.readacross.platforms import render
    from l1000_assets.core.releases.synthetic import build_world, default_config

    world, _ = build_world(default_config(n_profiles=6_000, seed=3))
    plates = render.render_plates(world, [pert])
    counts, sheet = render.render_counts(plates)
    render.counts_table(counts, sheet, plates.symbols).to_csv(tmp_path / "counts.csv", index=False)
    sheet.to_csv(tmp_path / "samples.csv", index=False)
    render.de_table(counts, sheet, plates.gene_ids).to_csv(
        tmp_path / "de.tsv", sep="\t", index=False
    )
    rows = render.panel_genes(plates, 500)
    panel, _ = render.render_counts(plates, genes=rows, library_size=3e6)
    render.counts_table(panel, sheet, [plates.symbols[i] for i in rows], probes=True).to_csv(
        tmp_path / "panel.csv", index=False
    )
    return tmp_path


def read_across_cli(graph, *args):
    return subprocess.run(
        [L1000, "read-across", *map(str, args), "--top", "10", "--data-root", str(graph.root)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def top_ids(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.split()[:3] == ["query_id", "rank", "similarity"]
    )
    return [line.split()[3] for line in lines[header + 1 : header + 11]]


def test_models_store_landmark_statistics(embedded):
    from l1000_assets.core.readacross.platforms.landmark_stats import STATS_FILE, LandmarkStats

    graph, _ = embedded
    stats = LandmarkStats.load(graph.root / "models" / "embedding_model" / "all" / STATS_FILE)
    assert stats.covariance.shape == (978, 978) and stats.n_profiles > 1000
    assert -0.5 < stats.quantiles[500] < 0.5


def test_cli_platforms_rank_a_rendered_experiment_of_a_known_perturbagen(embedded, tmp_path):
    """RNA-seq counts with a sheet, a TempO-Seq panel (500 landmarks, the rest imputed) and
    a DE table of a rendered experiment of a known perturbagen: the CLI finds it in the top
    10 each time and reports coverage, transform and imputation."""
    graph, _ = embedded
    pert, _ = known_query(graph)
    folder = rendered_experiment(graph, pert, tmp_path)
    out = read_across_cli(
        graph,
        folder / "counts.csv",
        folder / "panel.csv",
        "--platform",
        "rnaseq",
        "--samples",
        folder / "samples.csv",
    )
    assert out.returncode == 0, out.stderr
    assert "platform rnaseq; transform: counts: median-of-ratios size factors, vst" in out.stderr
    assert "panel.csv: 1 profile(s), 500/978 landmark genes" in out.stderr
    assert "panel.csv: 478 landmark(s) imputed" in out.stderr
    assert pert in top_ids(out.stdout)
    de = read_across_cli(graph, folder / "de.tsv", "--platform", "de")
    assert de.returncode == 0, de.stderr
    assert "DE table: statistic (stat)" in de.stderr and pert in top_ids(de.stdout)
    bad = read_across_cli(graph, folder / "counts.csv", "--platform", "rnaseq")
    assert bad.returncode == 1 and "needs a sample sheet" in bad.stderr


def test_asset_reads_the_manifest_beside_a_query(embedded, tmp_path):
    graph, _ = embedded
    pert, _ = known_query(graph)
    folder = rendered_experiment(graph, pert, tmp_path)
    (folder / "counts.csv.json").write_text(
        json.dumps({"platform": "rnaseq", "samples": "samples.csv", "count_transform": "log2cpm"})
    )
    result = graph.run(
        ["read_across_results"],
        config={
            "ops": {"read_across_results": {"config": {"files": [str(folder / "counts.csv")]}}}
        },
    )
    assert result.success
    queries = pd.read_parquet(graph.root / "lake" / "read_across" / "queries.parquet")
    mine = queries[queries["query_file"] == "counts.csv"]
    assert mine["platform"].tolist() == ["rnaseq"] and "log2cpm" in mine["transform"].iloc[0]
    results = pd.read_parquet(graph.root / "lake" / "read_across" / "results.parquet")
    hits = results[results["query_file"] == "counts.csv"].sort_values("rank")
    assert pert in hits["pert_id"].head(10).tolist()


def test_cli_imputes_missing_landmarks_of_zscores(embedded, tmp_path):
    """A z-score profile with 300 of its 978 landmarks: refused by default (more than 50
    missing), ranked with --impute, the 678 others imputed from the model's statistics."""
    graph, _ = embedded
    pert, table = known_query(graph)
    path = tmp_path / "panel_zscores.csv"
    table.sample(300, random_state=0).to_csv(path, index=False)
    refused = read_across_cli(graph, path)
    assert refused.returncode == 1 and "678 of 978 landmark genes missing" in refused.stderr
    out = read_across_cli(graph, path, "--impute")
    assert out.returncode == 0, out.stderr
    assert "panel_zscores.csv: 678 landmark(s) imputed" in out.stderr
    assert "300/978 landmark genes" in out.stderr
    assert pert in top_ids(out.stdout)
