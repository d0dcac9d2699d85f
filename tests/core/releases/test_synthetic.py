"""The synthetic release: GEO layout, determinism, ground truth, realism, calibration."""

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from l1000_assets.core.formats import compat
from l1000_assets.core.formats.gctx import MATRIX_NODE, GctxReader
from l1000_assets.core.formats.info_tables import landmark_gene_ids, read_info_table
from l1000_assets.core.releases.local import find_release_files
from l1000_assets.core.releases.reconcile import check_release
from l1000_assets.core.releases.schema import CONTROL_PERT_TYPES
from l1000_assets.core.releases.synthetic import (
    INST_COLUMNS,
    SyntheticConfig,
    simulate_landmark_profiles,
    write_synthetic_release,
)


def test_geo_file_names_and_layout(small_release, small_config):
    n = small_config.n_profiles
    assert small_release.level4.name == f"SYNTH_Broad_LINCS_Level4_ZSPCINF_mlr12k_n{n}x12328.gctx"
    for table in ("inst_info", "gene_info", "pert_info", "cell_info"):
        assert getattr(small_release, table).name == f"SYNTH_Broad_LINCS_{table}.txt"
    with h5py.File(small_release.level4, "r") as f:
        assert f.attrs["version"] == b"GCTX1.0"
        matrix = f[MATRIX_NODE]
        assert matrix.shape == (n, 12_328)  # samples x genes on disk
        assert matrix.dtype == np.float32
        assert matrix.chunks == (1000, 1000)
    assert check_release(find_release_files(small_release.root)) == {
        "n_profiles": n,
        "n_genes": 12_328,
        "n_landmarks": 978,
    }


def test_metadata_columns_and_ground_truth(small_release):
    inst = read_info_table(small_release.inst_info, id_column="inst_id")
    assert list(inst.columns) == INST_COLUMNS
    genes = read_info_table(small_release.gene_info, id_column="pr_gene_id")
    assert list(genes.columns) == [
        "pr_gene_id",
        "pr_gene_symbol",
        "pr_gene_title",
        "pr_is_lm",
        "pr_is_bing",
    ]
    assert len(landmark_gene_ids(genes)) == 978
    perts = read_info_table(small_release.pert_info, id_column="pert_id")
    assert {"moa", "target", "pert_iname", "pert_type"} <= set(perts.columns)
    cp = perts[perts["pert_type"] == "trt_cp"]
    assert cp["moa"].notna().all() and cp["target"].notna().all()
    assert cp["moa"].nunique() >= 5
    assert perts.loc[perts["pert_type"].isin(["trt_sh", "trt_oe"]), "target"].notna().all()
    # Every profile's perturbagen is described; all perturbagen types and controls occur.
    assert set(inst["pert_id"]) <= set(perts["pert_id"])
    assert {"trt_cp", "trt_sh", "trt_oe", "ctl_vehicle", "ctl_vector", "ctl_untrt"} <= set(
        inst["pert_type"]
    )
    cells = read_info_table(small_release.cell_info, id_column="cell_id")
    assert set(inst["cell_id"]) <= set(cells["cell_id"])


def test_replicates_on_different_plates(small_release):
    inst = read_info_table(small_release.inst_info)
    treat = inst[~inst["pert_type"].isin(CONTROL_PERT_TYPES)]
    per_condition = treat.groupby(["pert_id", "cell_id", "pert_dose", "pert_time"])["rna_plate"]
    assert (per_condition.nunique() == per_condition.size()).all()  # never twice on one plate
    assert per_condition.size().max() == 3
    assert treat.groupby("pert_id")["cell_id"].nunique().max() > 1  # several cell lines


def test_written_landmarks_equal_in_memory_simulation(small_release, small_config):
    inst, values = simulate_landmark_profiles(small_config)
    genes = read_info_table(small_release.gene_info)
    with GctxReader(small_release.level4) as r:
        assert list(r.col_ids) == inst["inst_id"].tolist()
        landmarks = r.read(r.row_positions(landmark_gene_ids(genes)), block_size=300)
    np.testing.assert_array_equal(landmarks, values)


def test_cmappy_and_h5py_read_identical_values(small_release):
    with GctxReader(small_release.level4) as r:
        cids = list(r.col_ids[:50])
        ours = r.read(stop=50)
    gctoo = compat.parse(small_release.level4, cid=cids)
    np.testing.assert_array_equal(gctoo.data_df.to_numpy().T, ours)


def test_level4_is_a_robust_zscore_per_plate(small_release):
    inst = read_info_table(small_release.inst_info)
    with GctxReader(small_release.level4) as r:
        values = r.read(np.arange(0, 12_328, 97))
    plate = inst["rna_plate"].to_numpy()
    for p in pd.unique(plate)[:5]:
        x = values[plate == p]
        if len(x) < 100:
            continue  # a plate cut short at the end of the release
        np.testing.assert_allclose(np.median(x, axis=0), 0, atol=1e-5)
        mad = 1.4826 * np.median(np.abs(x), axis=0)
        np.testing.assert_allclose(mad, 1, atol=1e-3)
    assert np.isfinite(values).all()


def test_non_landmarks_are_inferred_from_landmarks(small_release):
    """Inferred genes are (noisy) linear functions of the landmarks, as in CMap."""
    genes = read_info_table(small_release.gene_info)
    bing = np.nonzero(genes["pr_is_bing"].to_numpy() == "1")[0]
    with GctxReader(small_release.level4) as r:
        x = r.read(np.arange(978)).astype(np.float64)
        y = r.read(bing[978:1078]).astype(np.float64)
    train, test = slice(0, 1500), slice(1500, None)
    coef = np.linalg.solve(x[train].T @ x[train] + 100 * np.eye(978), x[train].T @ y[train])
    resid = y[test] - x[test] @ coef
    r2 = 1 - (resid**2).sum() / ((y[test] - y[test].mean(0)) ** 2).sum()
    assert r2 > 0.5


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    config = SyntheticConfig(n_profiles=600, seed=3)
    a = write_synthetic_release(tmp_path / "a", config)
    b = write_synthetic_release(tmp_path / "b", config)
    for name in ("level4", "inst_info", "gene_info", "pert_info", "cell_info"):
        assert getattr(a, name).read_bytes() == getattr(b, name).read_bytes(), name
    c = write_synthetic_release(tmp_path / "c", SyntheticConfig(n_profiles=600, seed=4))
    with GctxReader(a.level4) as ra, GctxReader(c.level4) as rc:
        assert not np.array_equal(ra.read(stop=100), rc.read(stop=100))
    manifest = json.loads(a.manifest.read_text())
    assert manifest["config"]["seed"] == 3


def test_same_perturbagen_is_more_alike_across_cell_lines_than_chance():
    """Shared programs: a perturbagen resembles itself in another cell line, and MOA mates."""
    inst, x = simulate_landmark_profiles(SyntheticConfig(n_profiles=6_000, seed=1))
    keep = inst["pert_type"].eq("trt_cp").to_numpy()
    inst, x = inst[keep].reset_index(drop=True), x[keep]
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sig = pd.DataFrame(x).groupby([inst["pert_id"], inst["cell_id"]]).mean()
    perts = sig.index.get_level_values(0).to_numpy()
    cells = sig.index.get_level_values(1).to_numpy()
    s = sig.to_numpy()
    s = s / np.linalg.norm(s, axis=1, keepdims=True)
    sim = s @ s.T
    same_pert_other_cell = (perts[:, None] == perts[None, :]) & (cells[:, None] != cells[None, :])
    different = perts[:, None] != perts[None, :]
    assert sim[same_pert_other_cell].mean() > sim[different].mean() + 0.1


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="cells_per_perturbagen"):
        SyntheticConfig(n_cell_lines=2, cells_per_perturbagen=3)


def test_structure_is_learnable_from_training_perturbagens():
    """A fair stand-in: a metric learned on training perturbagens (here plain LDA) must beat
    z-score cosine on held-out ones, as the deep embedding does on real L1000."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    from l1000_assets.core.evaluation.metrics import (
        RetrievalSummary,
        same_label_quantiles,
    )
    from l1000_assets.core.model.split import heldout_perturbagens

    inst, x = simulate_landmark_profiles(SyntheticConfig(n_profiles=12_000, seed=5))
    keep = ~inst["pert_type"].isin(CONTROL_PERT_TYPES).to_numpy()
    labels, x = inst.loc[keep, "pert_id"].to_numpy(), x[keep]
    held = np.isin(labels, heldout_perturbagens(labels, seed=0))
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage=0.1, n_components=32)
    lda.fit(x[~held], labels[~held])
    auc = {
        name: RetrievalSummary.from_quantiles(same_label_quantiles(v, labels[held]), 0)["auc"]
        for name, v in (("zscore", x[held]), ("lda", lda.transform(x[held])))
    }
    assert auc["lda"] > auc["zscore"] + 0.05, auc


def test_rewriting_replaces_the_whole_release(tmp_path):
    write_synthetic_release(tmp_path / "r", SyntheticConfig(n_profiles=300, seed=1))
    write_synthetic_release(tmp_path / "r", SyntheticConfig(n_profiles=400, seed=2))
    assert len(list((tmp_path / "r").glob("*.gctx"))) == 1
    assert check_release(find_release_files(tmp_path / "r"))["n_profiles"] == 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_refuses_to_replace_a_directory_that_is_not_a_release(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a synthetic release: refusing"):
        write_synthetic_release(tmp_path / "mine", SyntheticConfig(n_profiles=300))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_every_seed_measures_the_real_platform_genes(small_release):
    """The release's genes are the GEO table of the real level-4 files, for every seed (one
    lake, one model); landmarks first in ascending Entrez id."""
    from l1000_assets.core.releases.synthetic import platform_genes

    genes = read_info_table(small_release.gene_info, id_column="pr_gene_id")
    assert len(genes) == 12_328
    lm = genes[genes["pr_is_lm"] == "1"]
    assert len(lm) == 978 and lm.index.min() == 0 and lm.index.max() == 977
    assert lm["pr_gene_id"].astype(int).is_monotonic_increasing
    by_id = genes.set_index("pr_gene_id")
    assert by_id.loc["5720", "pr_gene_symbol"] == "PSME1"  # a landmark
    assert by_id.loc["5720", "pr_is_lm"] == "1"
    assert by_id.loc["1956", "pr_gene_symbol"] == "EGFR"
    pd.testing.assert_frame_equal(platform_genes(), platform_genes())
    assert platform_genes()["pr_gene_id"].tolist() == genes["pr_gene_id"].tolist()


def test_real_names_annotations_and_structures(small_release):
    """Compounds are real LINCS compounds with their real MOA, target and SMILES; hairpins
    and ORFs act on real genes; the cell lines are the LINCS core lines; the manifest says
    the release is synthetic."""
    from l1000_assets.core.releases import reference
    from l1000_assets.core.releases.synthetic import CELL_LINES

    perts = read_info_table(small_release.pert_info, id_column="pert_id")
    ref = reference.compounds().set_index("pert_id")
    cp = perts[perts["pert_type"] == "trt_cp"].set_index("pert_id")
    assert len(cp) > 10 and cp.index.isin(ref.index).all()
    for col in ("pert_iname", "moa", "target", "canonical_smiles", "inchi_key"):
        assert (cp[col] == ref.loc[cp.index, col]).all(), col
    assert not cp["pert_iname"].str.startswith("synth").any()
    symbols = set(reference.genes()["pr_gene_symbol"])
    genetic = perts[perts["pert_type"].isin(["trt_sh", "trt_oe"])]
    assert genetic["pert_iname"].isin(symbols).all()
    assert (genetic["target"] == genetic["pert_iname"]).all()
    assert genetic.loc[genetic["pert_type"] == "trt_sh", "pert_id"].str.match(r"^TRCN\d{10}$").all()
    cells = read_info_table(small_release.cell_info)
    assert cells["cell_id"].tolist() == [c[0] for c in CELL_LINES[: len(cells)]]
    manifest = json.loads(small_release.manifest.read_text())
    assert manifest["synthetic"] is True and "not biology" in manifest["note"]


@pytest.fixture(scope="module")
def world():
    from l1000_assets.core.releases.synthetic import build_world

    return build_world(SyntheticConfig(n_profiles=36_000, seed=3))[0]


def _cosine(x):
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def test_perturbagens_sharing_a_target_have_similar_true_effects(world):
    """Ground truth: compounds that share an annotated target act more alike than compounds
    that share none; a knock-down mimics inhibitors of its gene, an ORF its agonists."""
    from l1000_assets.core.evaluation.structure import annotation_sets

    p = world.perts
    cp = np.nonzero((p["pert_type"] == "trt_cp").to_numpy())[0]
    sets = annotation_sets(p["target"].to_numpy()[cp])
    share = np.array([[bool(a & b) for b in sets] for a in sets])
    np.fill_diagonal(share, False)
    unrelated = ~share
    np.fill_diagonal(unrelated, False)
    sim = _cosine(world.effects(cp))
    assert share.sum() > 100
    assert np.median(sim[share]) > np.median(sim[unrelated]) + 0.3
    assert abs(np.median(sim[unrelated])) < 0.1
    # Hairpins of one gene act alike (the knock-down), more than hairpins of other genes.
    sh = np.nonzero((p["pert_type"] == "trt_sh").to_numpy())[0]
    genes = p["pert_iname"].to_numpy()[sh]
    same_gene = genes[:, None] == genes[None, :]
    np.fill_diagonal(same_gene, False)
    other = genes[:, None] != genes[None, :]
    s = _cosine(world.effects(sh))
    assert s[same_gene].mean() > s[other].mean() + 0.2


def test_hairpins_sharing_a_seed_share_an_off_target_effect(world):
    """Two hairpins of different genes with one seed sequence act alike (the seed's
    off-target effect); with different seeds they do not."""
    p = world.perts
    sh = np.nonzero((p["pert_type"] == "trt_sh").to_numpy())[0]
    seed = p["seed_index"].to_numpy()[sh]
    genes = p["pert_iname"].to_numpy()[sh]
    other_gene = genes[:, None] != genes[None, :]
    same_seed = (seed[:, None] == seed[None, :]) & other_gene
    other_seed = (seed[:, None] != seed[None, :]) & other_gene
    assert same_seed.sum() >= 20
    s = _cosine(world.effects(sh))
    assert s[same_seed].mean() > s[other_seed].mean() + 0.2
    # The seed's own part is the same vector for both hairpins.
    assert len(world.seeds) == len(set(world.seeds)) and all(len(x) == 7 for x in world.seeds)


def test_structural_neighbours_share_hidden_off_targets_more_often(world):
    """Off-targets are inherited from structurally similar compounds (ECFP4 Tanimoto)."""
    from l1000_assets.core.structure.tanimoto import tanimoto

    p = world.perts
    cp = np.nonzero((p["pert_type"] == "trt_cp").to_numpy())[0]
    hidden = [set(h.split("|")) - {""} for h in p["hidden_targets"].to_numpy()[cp]]
    fps = world.extra["fingerprints"]
    t = tanimoto(fps.packed, fps.packed)
    i, j = np.triu_indices(len(cp), 1)
    shares = np.array([bool(hidden[a] & hidden[b]) for a, b in zip(i, j)])
    similar = t[i, j] >= 0.5
    dissimilar = t[i, j] < 0.2
    assert similar.sum() >= 20
    assert shares[similar].mean() > 5 * shares[dissimilar].mean()


def test_cell_lines_modulate_modules_and_receptors_idle_in_culture(world):
    """Cell lines re-weight module activity (the same perturbagen's true effect differs
    between lines); receptor targets are mostly idle and unexpressed."""
    cp = np.nonzero((world.perts["pert_type"] == "trt_cp").to_numpy())[0][:50]
    a, b = world.effects(cp, 0), world.effects(cp, 1)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert 0.2 < np.median(cos) < 0.98
    t = world.targets
    receptors = t["symbol"].isin(["DRD2", "HTR2A", "ADRB2", "HRH1"])
    enzymes = t["symbol"].isin(["HDAC1", "PTGS2", "MTOR", "TOP2A", "HSP90AA1"])
    assert t.loc[receptors, "basal_activity"].mean() < t.loc[enzymes, "basal_activity"].mean()


def test_moa_sign():
    from l1000_assets.core.releases.synthetic import gene_family, moa_sign

    assert moa_sign("Dopamine receptor antagonist") == -1
    assert moa_sign("Glucocorticoid receptor agonist") == 1
    assert moa_sign("Insulin sensitizer|PPAR receptor agonist") == 1
    assert moa_sign("Adrenergic receptor inverse agonist") == -1
    assert moa_sign(None) == -1
    assert gene_family("HTR2A") == gene_family("HTR1B") == "HTR"
    assert gene_family("PDE4D") == "PDE" and gene_family("EGFR") == "EGFR"


def test_releases_of_different_seeds_have_distinct_profile_ids():
    """A second synthetic release (another seed) can join the same lake."""
    from l1000_assets.core.releases.synthetic import (
        SyntheticConfig,
        simulate_landmark_profiles,
    )

    a, _ = simulate_landmark_profiles(SyntheticConfig(n_profiles=400, seed=0))
    b, _ = simulate_landmark_profiles(SyntheticConfig(n_profiles=400, seed=1))
    assert not set(a["inst_id"]) & set(b["inst_id"])
    assert a["inst_id"].str.startswith("SYNCP").any() or a["inst_id"].str.startswith("SYNGEN").any()
    assert b["inst_id"].str.startswith("SYNS1").all()
