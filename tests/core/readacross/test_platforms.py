"""Queries from other platforms: transforms against cmapPy, the readers of each input kind
on rendered synthetic experiments and on the real files in ../shared, imputation, bad input,
the manifest beside a query file (no model needed)."""

import json
import os
import time

import numpy as np
import pandas as pd
import pytest

from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.gct import GctReader
from l1000_assets.core.formats.info_tables import read_info_table
from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.readacross.folder import queries_in, scan_queries
from l1000_assets.core.readacross.genes import GeneIndex
from l1000_assets.core.readacross.manifest import read_manifest
from l1000_assets.core.readacross.platforms import render
from l1000_assets.core.readacross.platforms import transforms as tf
from l1000_assets.core.readacross.platforms.identifiers import identifier_kind
from l1000_assets.core.readacross.platforms.inputs import PlatformOptions, read_platform_query
from l1000_assets.core.readacross.platforms.landmark_stats import (
    LandmarkStats,
    fit_landmark_stats,
    landmark_stats_of,
)
from l1000_assets.core.readacross.platforms.validation import References, retrieval
from l1000_assets.core.releases.schema import canonical_genes
from l1000_assets.core.releases.synthetic import SyntheticConfig, build_world, simulate


# --------------------------------------------------------------------------------------
# Fixtures: a small world, its renderings, its genes, landmark statistics of its level 4
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world():
    return build_world(SyntheticConfig(n_profiles=3000, seed=7))


@pytest.fixture(scope="module")
def genes(world) -> GeneIndex:
    g = world[0].genes
    table = pd.DataFrame(
        {
            "gene_id": g["pr_gene_id"].astype(str),
            "symbol": g["pr_gene_symbol"],
            "is_landmark": g["pr_is_lm"].astype(int) == 1,
        }
    )
    # The model's input order differs from the file's.
    order = list(np.random.default_rng(1).permutation(table.loc[table["is_landmark"], "gene_id"]))
    return GeneIndex.from_genes(table, order, "card.json")


@pytest.fixture(scope="module")
def stats(world, genes) -> LandmarkStats:
    inst, values = simulate(*world)
    lm = world[0].genes["pr_gene_id"].astype(str).tolist()[:N_LANDMARKS]
    x = np.zeros_like(values)
    x[:, [genes.position[g] for g in lm]] = values
    return landmark_stats_of(x[inst["pert_type"].str.startswith("trt").to_numpy()])


@pytest.fixture(scope="module")
def plates(world):
    return render.render_plates(world[0], world[0].perts["pert_id"].tolist()[:10])


@pytest.fixture(scope="module")
def counts(plates):
    return render.render_counts(plates, seed=0)


def level4_groups(plates, genes, groups):
    """The rendered level-4 group means (plate population), in the model's order."""
    pos = [genes.position[g] for g in plates.gene_ids[:N_LANDMARKS]]
    out = np.zeros((len(groups), N_LANDMARKS))
    for i, g in enumerate(groups):
        wells = (plates.wells["group"] == g).to_numpy()
        out[i, pos] = plates.level4[wells][:, :N_LANDMARKS].mean(axis=0)
    return out


def correlations(a, b, mask=None):
    m = slice(None) if mask is None else mask
    return np.array([np.corrcoef(x[m], y[m])[0, 1] for x, y in zip(a, b)])


def write_counts(tmp_path, plates, counts, labels=None, **kw):
    c, sheet = counts
    matrix, samples = tmp_path / "counts.csv", tmp_path / "samples.csv"
    render.counts_table(c, sheet, labels or plates.symbols, **kw).to_csv(matrix, index=False)
    sheet.to_csv(samples, index=False)
    return matrix, samples


# --------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------
def test_robust_zscore_is_cmappys():
    from cmapPy.math.robust_zscore import robust_zscore as cmap_zscore

    rng = np.random.default_rng(0)
    x = rng.normal(8, 1, (50, 12))
    x[:5] = 3.0 + rng.normal(0, 0.01, (5, 12))  # tiny MADs: clipped at 0.1
    ctl = x[:, :4]
    expected = cmap_zscore(pd.DataFrame(x), pd.DataFrame(ctl)).to_numpy()
    np.testing.assert_allclose(tf.robust_zscore(x, ctl), expected, atol=1e-4)
    plate = cmap_zscore(pd.DataFrame(x)).to_numpy()
    np.testing.assert_allclose(tf.robust_zscore(x), plate, atol=1e-4)


def test_size_factors_and_log_transforms():
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 50.0, 2000)
    counts = rng.poisson(np.outer(base, [1.0, 2.0, 0.5]))
    f = tf.size_factors(counts)
    np.testing.assert_allclose(f / f[0], [1.0, 2.0, 0.5], rtol=0.05)
    cpm = tf.normalized_counts(counts)
    np.testing.assert_allclose(cpm.sum(axis=0), 1e6, rtol=0.05)
    # Negative-binomial counts (dispersion 0.1): the dispersion is estimated, and the NB
    # transform tends to log2 for large counts.
    mean = np.outer(rng.gamma(2.0, 500.0, 2000), np.ones(4))
    nb = rng.poisson(rng.gamma(10.0, mean / 10.0))
    assert 0.07 < tf.nb_dispersion(tf.normalized_counts(nb)) < 0.13
    vst, cpm = tf.log_expression(nb, "vst"), tf.normalized_counts(nb)
    high = cpm.mean(axis=1) > 1000
    assert np.abs(vst[high] - np.log2(cpm[high])).max() < 0.05
    with pytest.raises(ValueError, match="unknown count transform"):
        tf.log_expression(counts, "tpm")


def test_quantile_map_takes_the_target_distribution():
    q = np.linspace(-3, 3, 1001)
    x = np.random.default_rng(0).exponential(size=(999, 2))
    mapped = tf.quantile_map(x, q)
    assert (np.argsort(mapped[:, 0]) == np.argsort(x[:, 0])).all()
    np.testing.assert_allclose(
        np.sort(mapped[:, 0])[[0, 499, 998]], [-2.997, 0.0, 2.997], atol=0.01
    )


# --------------------------------------------------------------------------------------
# Landmark statistics and imputation
# --------------------------------------------------------------------------------------
def test_landmark_stats_streamed_equal_in_memory(small_lake, tmp_path):
    import pyarrow.parquet as pq

    from l1000_assets.core.lake.read import landmark_matrix

    x = np.concatenate([landmark_matrix(pq.read_table(p)) for p in small_lake])
    streamed = fit_landmark_stats(small_lake, None)
    direct = landmark_stats_of(x)
    assert streamed.n_profiles == len(x)
    np.testing.assert_allclose(streamed.covariance, np.cov(x.astype(np.float64).T), atol=1e-6)
    np.testing.assert_allclose(streamed.mean, x.mean(axis=0), atol=1e-5)
    assert np.abs(direct.quantiles[[100, 500, 900]] - np.quantile(x, [0.1, 0.5, 0.9])).max() < 0.01
    loaded = LandmarkStats.load(streamed.save(tmp_path / "s.npz"))
    np.testing.assert_allclose(loaded.covariance, streamed.covariance, rtol=1e-5, atol=1e-6)


def test_imputation_recovers_correlated_landmarks(stats):
    """On profiles drawn from the statistics' own Gaussian, the imputed values of the
    unmeasured landmarks correlate with the truth; measured ones are kept."""
    rng = np.random.default_rng(0)
    w, v = np.linalg.eigh(stats.covariance)
    x = stats.mean + (rng.standard_normal((20, N_LANDMARKS)) * np.sqrt(np.maximum(w, 0))) @ v.T
    measured = np.zeros(N_LANDMARKS, bool)
    measured[rng.choice(N_LANDMARKS, 300, replace=False)] = True
    filled = stats.impute(x, measured)
    np.testing.assert_array_equal(filled[:, measured], x[:, measured])
    r = correlations(filled, x, ~measured)
    assert np.median(r) > 0.5, r


# --------------------------------------------------------------------------------------
# The input kinds on rendered experiments
# --------------------------------------------------------------------------------------
def test_rnaseq_whole_transcriptome_by_symbol(tmp_path, plates, counts, genes, stats):
    matrix, samples = write_counts(tmp_path, plates, counts)
    q = read_platform_query(matrix, "rnaseq", genes, samples=samples, stats=stats)
    groups = [g for g in pd.unique(counts[1]["group"]) if g != "control"]
    assert q.profile_ids == groups and q.platform == "rnaseq"
    assert q.missing == [] and q.imputed == [] and q.n_landmarks_used == N_LANDMARKS
    assert "vst" in q.transform and "controls of each batch" in q.transform
    r = correlations(q.values, level4_groups(plates, genes, groups))
    assert np.median(r) > 0.5, r
    cpm = read_platform_query(
        matrix, "rnaseq", genes, samples=samples, options=PlatformOptions(count_transform="log2cpm")
    )
    assert "log2cpm" in cpm.transform and np.median(correlations(cpm.values, q.values)) > 0.9


def test_tempo_seq_panel_probes_summed_and_landmarks_imputed(
    tmp_path, plates, counts, genes, stats
):
    rows = render.panel_genes(plates, 300, n_other=500)
    c, sheet = render.render_counts(plates, genes=rows, library_size=3e6)
    labels = [plates.symbols[i] for i in rows]
    matrix, samples = write_counts(tmp_path, plates, (c, sheet), labels, probes=True)
    table = pd.read_csv(matrix)
    assert table["gene"].iloc[0].endswith("_10000") and len(table) > len(rows)  # two probes
    q = read_platform_query(matrix, "rnaseq", genes, samples=samples, stats=stats)
    assert q.n_landmarks_used == 300 and len(q.imputed) == N_LANDMARKS - 300
    assert "678 landmark(s) imputed" in q.transform
    truth = level4_groups(plates, genes, q.profile_ids)
    measured = np.ones(N_LANDMARKS, bool)
    measured[[genes.position[g] for g in q.missing]] = False
    assert np.median(correlations(q.values, truth, measured)) > 0.5
    assert np.median(correlations(q.values, truth, ~measured)) > 0.1  # imputed, weaker
    bare = read_platform_query(matrix, "rnaseq", genes, samples=samples, stats=None)
    assert (bare.values[:, ~measured] == 0).all() and "set to 0" in " ".join(bare.warnings)


def test_de_table_contrasts(tmp_path, plates, counts, genes, stats):
    c, sheet = counts
    de = render.de_table(c, sheet, plates.gene_ids)
    path = tmp_path / "de.csv"
    de.to_csv(path, index=False)
    q = read_platform_query(path, "de", genes, stats=stats)
    groups = [g for g in pd.unique(sheet["group"]) if g != "control"]
    assert q.profile_ids == groups and "statistic (stat)" in q.transform
    assert np.median(correlations(q.values, level4_groups(plates, genes, groups))) > 0.4
    # edgeR-style: logFC and PValue only (no signed statistic), one contrast, by Entrez id.
    one = de[de["contrast"] == groups[0]].rename(columns={"log2FoldChange": "logFC"})
    one[["gene", "logFC", "pvalue"]].rename(columns={"pvalue": "PValue"}).to_csv(
        tmp_path / "edger.tsv", sep="\t", index=False
    )
    e = read_platform_query(tmp_path / "edger.tsv", "de", genes)
    assert e.profile_ids == ["edger"] and "p-value (PValue)" in e.transform
    assert correlations(e.values, q.values[:1])[0] > 0.8
    fc = read_platform_query(path, "de", genes, options=PlatformOptions(de_value="log2fc"))
    assert "log2 fold change" in fc.transform


def _write_gct(path, plates, rows):
    keep = (plates.wells["group"] != "").to_numpy()
    ids = plates.wells.loc[keep, "inst_id"].tolist()
    with open(path, "w") as f:
        f.write(
            f"#1.3\n{len(rows)}\t{len(ids)}\t1\t0\nid\tpr_gene_symbol\t" + "\t".join(ids) + "\n"
        )
        for r in rows:
            values = "\t".join(f"{v:.4f}" for v in plates.level3[keep][:, r])
            f.write(f"{plates.gene_ids[r]}\t{plates.symbols[r]}\t{values}\n")
    sheet = plates.wells.loc[keep, ["inst_id", "group", "batch"]].rename(
        columns={"inst_id": "sample"}
    )
    return ids, sheet


def test_level3_plate_against_controls_or_plate_population(tmp_path, plates, genes, stats):
    path = tmp_path / "plate.gct"
    ids, sheet = _write_gct(path, plates, range(N_LANDMARKS))
    sheet.to_csv(tmp_path / "sheet.tsv", sep="\t", index=False)
    q = read_platform_query(path, "l1000-level3", genes, samples=tmp_path / "sheet.tsv")
    assert "control wells" in q.transform and q.n_landmarks_used == N_LANDMARKS
    assert np.median(correlations(q.values, level4_groups(plates, genes, q.profile_ids))) > 0.6
    wells = read_platform_query(path, "l1000-level3", genes)
    assert wells.profile_ids == ids and "plate population" in wells.transform


# --------------------------------------------------------------------------------------
# The real files in ../shared
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_genes(real_dir) -> GeneIndex:
    table = canonical_genes(read_info_table(real_dir / "gene_info_n12328.txt"))
    return GeneIndex.from_genes(table, table.loc[table["is_landmark"], "gene_id"].tolist())


def test_real_level3_plate_is_cmaps_level4(real_dir, real_genes, tmp_path):
    """LJP005 (real level 3, probe row ids, genes in pr_gene_id): against the plate
    population it is cmapPy's robust z-score of the plate (ZSPC); with a sheet naming its
    26 DMSO wells as controls, one profile per compound, and single-well groups warned."""
    from cmapPy.math.robust_zscore import robust_zscore as cmap_zscore

    path = real_dir / "LJP005_A375_24H_level4_n377x978.gct"
    q = read_platform_query(path, "l1000-level3", real_genes)
    assert len(q.profile_ids) == 377 and q.n_landmarks_used == N_LANDMARKS and not q.warnings
    gct = GctReader(path, row_id_field="pr_gene_id")
    # GctReader.values: wells x genes; cmapPy z-scores each row (gene) of genes x wells.
    expected = cmap_zscore(pd.DataFrame(gct.values.T.astype(np.float64))).to_numpy().T
    pos = [real_genes.position[str(g)] for g in gct.row_ids]
    np.testing.assert_allclose(q.values[:, pos], expected, atol=2e-3)
    meta = gct.col_metadata()
    group = np.where(
        meta["pert_iname"].str.upper() == "DMSO",
        "control",
        meta["pert_iname"] + "_" + meta["pert_dose"].astype(str),
    )
    sheet = pd.DataFrame({"sample": gct.col_ids, "group": group})
    sheet.to_csv(tmp_path / "ljp005_samples.csv", index=False)
    g = read_platform_query(
        path, "l1000-level3", real_genes, samples=tmp_path / "ljp005_samples.csv"
    )
    assert len(g.profile_ids) == len(set(group)) - 1
    assert any("single replicate" in " ".join(w) for w in g.profile_warnings)
    assert np.abs(np.median(g.values)) < 0.5


def test_real_level4_gctx_given_as_level3_is_warned(real_dir, real_genes):
    q = read_platform_query(
        real_dir / "CORE_A_level4_ZSPCINF_n40x12328.gctx", "l1000-level3", real_genes
    )
    assert len(q.profile_ids) == 40 and "is this level 4 already" in " ".join(q.warnings)


# --------------------------------------------------------------------------------------
# Identifiers and bad input
# --------------------------------------------------------------------------------------
def test_identifier_kinds(genes):
    assert identifier_kind("7157", genes) == "entrez"
    assert identifier_kind("ENSG00000141510.17", genes) == "ensembl"
    assert identifier_kind(f"{genes.landmark_symbols[genes.gene_order[0]]}_12345", genes) == "probe"
    assert identifier_kind("__no_feature", genes) == "counter"
    assert identifier_kind("TP53", genes) == "symbol"


def small_counts(genes, n_genes=400, samples=("c1", "c2", "t1", "t2"), seed=0):
    rng = np.random.default_rng(seed)
    symbols = [genes.landmark_symbols[g] for g in genes.gene_order[:n_genes]]
    table = pd.DataFrame(rng.poisson(100, (n_genes, len(samples))), columns=list(samples))
    table.insert(0, "gene", symbols)
    return table


def sheet_of(groups: dict[str, str], batch: dict[str, str] | None = None) -> pd.DataFrame:
    out = pd.DataFrame({"sample": list(groups), "group": list(groups.values())})
    if batch:
        out["batch"] = [batch[s] for s in groups]
    return out


GROUPS = {"c1": "control", "c2": "control", "t1": "drug", "t2": "drug"}


def run(tmp_path, genes, table, sheet, name="m.csv", **kw):
    table.to_csv(tmp_path / name, index=False)
    sheet.to_csv(tmp_path / "s.csv", index=False)
    return read_platform_query(tmp_path / name, "rnaseq", genes, samples=tmp_path / "s.csv", **kw)


def test_a_small_counts_matrix_works_and_htseq_rows_are_skipped(tmp_path, genes):
    table = small_counts(genes)
    extra = pd.DataFrame([["__no_feature", 5, 5, 5, 5]], columns=table.columns)
    q = run(tmp_path, genes, pd.concat([table, extra]), sheet_of(GROUPS))
    assert q.profile_ids == ["drug"] and q.n_landmarks_used == 400


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t, s: (t, s[s["sample"] != "t2"]), "matrix column(s) not in the sheet: 't2'"),
        (
            lambda t, s: (t.drop(columns=["t2"]), s),
            "sample(s) of s.csv absent from the matrix: 't2'",
        ),
        (
            lambda t, s: (t, s.assign(group=["vehicle", "vehicle", "drug", "drug"])),
            "no control group",
        ),
        (lambda t, s: (t.assign(t1=t["t1"] - 200), s), "negative count(s)"),
        (lambda t, s: (t.assign(t1=t["t1"] + 0.5), s), "non-integer count(s)"),
        (
            lambda t, s: (t.assign(gene=[t["gene"][1].lower(), *t["gene"][1:]]), s),
            "given more than once after mapping",
        ),
        (
            lambda t, s: (t.assign(gene=[genes_first_id(t), *t["gene"][1:]]), s),
            "mixed gene identifier types",
        ),
        (
            lambda t, s: (t, s.assign(batch=["a", "a", "b", "b"])),
            "batch 'b' has no control samples",
        ),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, genes, change, message):
    global _GENES
    _GENES = genes
    table, sheet = change(small_counts(genes), sheet_of(GROUPS))
    with pytest.raises(L1000InputError, match=None) as caught:
        run(tmp_path, genes, table, sheet)
    text = str(caught.value)
    assert message in text, text
    assert str(tmp_path) in text


_GENES = None


def genes_first_id(table):
    return _GENES.symbols[table["gene"][0].upper()]  # an Entrez id among symbols


def test_pooled_control_spread(tmp_path, genes):
    """``control_spread="pooled"``: each batch's own control median, one MAD per gene from
    every batch's controls around their batch's median."""
    table = small_counts(genes, samples=("c1", "c2", "c3", "t1", "d1", "d2", "d3", "t2"))
    groups = dict(zip(table.columns[1:], ["control"] * 3 + ["drug"] + ["control"] * 3 + ["drug"]))
    batch = dict(zip(table.columns[1:], ["a"] * 4 + ["b"] * 4))
    opts = PlatformOptions(count_transform="log2cpm", control_spread="pooled", impute=False)
    q = run(tmp_path, genes, table, sheet_of(groups, batch), options=opts)
    logx = tf.log_expression(table.iloc[:, 1:].to_numpy(), "log2cpm")
    ctl_a, ctl_b = logx[:, :3], logx[:, 4:7]
    dev = np.concatenate(
        [ctl_a - np.median(ctl_a, 1, keepdims=True), ctl_b - np.median(ctl_b, 1, keepdims=True)],
        axis=1,
    )
    mad = np.maximum(np.median(np.abs(dev - np.median(dev, 1, keepdims=True)), 1), 0.1)
    z_a = (logx[:, 3] - np.median(ctl_a, 1)) / (1.4826 * mad)
    z_b = (logx[:, 7] - np.median(ctl_b, 1)) / (1.4826 * mad)
    pos = [genes.position[genes.symbols[s.upper()]] for s in table["gene"]]
    np.testing.assert_allclose(q.values[0, pos], (z_a + z_b) / 2, atol=1e-4)


def test_single_replicate_is_a_warning(tmp_path, genes):
    groups = {"c1": "control", "c2": "control", "t1": "drug", "t2": "other"}
    q = run(tmp_path, genes, small_counts(genes), sheet_of(groups))
    assert q.profile_ids == ["drug", "other"]
    assert all("single replicate" in w[0] for w in q.profile_warnings)


def test_ensembl_ids_need_a_mapping(tmp_path, genes):
    from l1000_assets.core.readacross.platforms.identifiers import read_gene_map

    table = small_counts(genes)
    ensembl = [f"ENSG{10**10 + i:011d}.3" for i in range(len(table))]
    mapping = pd.DataFrame({"ensembl": [e.split(".")[0] for e in ensembl], "symbol": table["gene"]})
    mapping.to_csv(tmp_path / "map.tsv", sep="\t", index=False)
    table["gene"] = ensembl
    with pytest.raises(L1000InputError, match="Ensembl gene ids .*--gene-map FILE"):
        run(tmp_path, genes, table, sheet_of(GROUPS))
    q = run(tmp_path, genes, table, sheet_of(GROUPS), gene_map=read_gene_map(tmp_path / "map.tsv"))
    assert q.n_landmarks_used == 400
    # Or a symbol column in the file itself (nf-core's gene_name).
    table.insert(1, "gene_name", mapping["symbol"])
    assert run(tmp_path, genes, table, sheet_of(GROUPS)).n_landmarks_used == 400


def test_too_few_landmarks_and_missing_sheet(tmp_path, genes):
    with pytest.raises(L1000InputError, match="40 of 978 landmark genes measured, fewer than"):
        run(tmp_path, genes, small_counts(genes, n_genes=40), sheet_of(GROUPS))
    small_counts(genes).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(L1000InputError, match="needs a sample sheet"):
        read_platform_query(tmp_path / "m.csv", "rnaseq", genes)


def test_retrieval_metrics_by_hand():
    refs = References(
        np.array(["a", "b", "c"]),
        np.array(["x", "x", None], object),
        np.eye(3, dtype=np.float32),
    )
    q = np.array([[0.9, 0.1, 0.5], [0.2, 0.1, 0.3]], np.float32)
    r = retrieval(q, ["a", "b"], refs, top=1)
    assert r["top10_perturbagen"] == 0.5  # a first for a; c first for b
    assert r["top10_moa"] == 0.0  # neither top-1 is another perturbagen of MOA x
    assert r["auc"] == pytest.approx((1.0 + 0.0) / 2)


# --------------------------------------------------------------------------------------
# The manifest beside a query file in the watched folder
# --------------------------------------------------------------------------------------
def test_manifest_names_the_platform_and_the_sheet(tmp_path, genes):
    folder = tmp_path / "queries"
    folder.mkdir()
    small_counts(genes).to_csv(folder / "experiment.csv", index=False)
    sheet_of(GROUPS).to_csv(folder / "experiment_samples.csv", index=False)
    (folder / "experiment.csv.json").write_text(
        json.dumps({"platform": "rnaseq", "samples": "experiment_samples.csv"})
    )
    manifest = read_manifest(folder / "experiment.csv")
    assert manifest.platform == "rnaseq" and manifest.samples.name == "experiment_samples.csv"
    assert queries_in(folder) == [folder / "experiment.csv"]
    past = time.time() - 60
    for p in folder.iterdir():
        os.utime(p, (past, past))
    changed, unsupported, seen = scan_queries(folder, {})
    assert changed == [folder / "experiment.csv"] and unsupported == []
    # A changed sample sheet re-ranks the query.
    sheet_of({**GROUPS, "t2": "other"}).to_csv(folder / "experiment_samples.csv", index=False)
    os.utime(folder / "experiment_samples.csv", (past + 5, past + 5))
    again, _, _ = scan_queries(folder, seen)
    assert again == [folder / "experiment.csv"]
    (folder / "experiment.csv.json").write_text(json.dumps({"platform": "rna"}))
    with pytest.raises(L1000InputError, match="experiment.csv.json: platform 'rna'"):
        read_manifest(folder / "experiment.csv")
