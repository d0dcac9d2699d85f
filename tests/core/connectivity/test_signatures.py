"""The signature store built from a release: MODZ as the lake's z-score signatures, ranks
that order the z-scores, bounded replicate holding, and refusals."""

import h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from l1000_assets.core.connectivity.signatures import (
    ReleaseInput,
    space_genes,
    write_signature_store,
)
from l1000_assets.core.connectivity.store import SignatureStore
from l1000_assets.core.embeddings.modz import write_zscore_signatures
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.info_tables import read_info_table
from l1000_assets.core.releases import reference
from l1000_assets.core.releases.schema import canonical_genes


def test_store_shape_and_index(small_store, small_meta):
    store, report = small_store
    meta, release = small_meta
    genes = release.genes
    n_bing = int((genes["is_bing"] | genes["is_landmark"]).sum())
    # The synthetic release measures the package's gene table (real Entrez ids and landmarks;
    # its pr_is_bing flags come from an older table: 7,367, where GEO's release has 10,174).
    reference_genes = reference.genes()
    assert n_bing == int((reference_genes["pr_is_bing"].astype(int) == 1).sum()) > 5_000
    assert store.ranks.shape == (n_bing, report.n_signatures) == store.zscores.shape
    assert store.gene_space == "bing" and report.spilled_profiles == 0
    # Landmarks first, in the lake's order.
    landmarks = genes.loc[genes["is_landmark"], "gene_id"].tolist()
    assert store.genes["gene_id"].tolist()[:978] == landmarks
    assert store.landmark_rows.tolist() == list(range(978))
    inst = pd.read_parquet(meta / "instances.parquet")
    treated = inst[inst["profile_class"] != "control"]
    assert report.n_profiles == len(treated)
    assert store.index["n_replicates"].sum() == len(treated)
    assert store.index["sig_id"].is_unique
    # Columns sorted by perturbagen, cell line, signature: a perturbagen is one run.
    keys = store.index[["pert_id", "cell_id", "sig_id"]].astype(str)
    assert keys.equals(keys.sort_values(["pert_id", "cell_id", "sig_id"]).reset_index(drop=True))
    assert (
        report.signatures_per_cell
        == treated.groupby("cell_id")
        .apply(lambda d: d.groupby(["pert_id", "pert_dose", "pert_time"]).ngroups)
        .to_dict()
    )


def test_ranks_order_each_signature(small_store):
    store, _ = small_store
    for c in [0, 17, len(store) - 1]:
        z = np.asarray(store.zscores[:, c], np.float32)
        order = np.argsort(np.asarray(store.ranks[:, c]))
        assert np.all(np.diff(z[order]) <= 0)  # descending z down the ranking
        assert sorted(np.asarray(store.ranks[:, c]).tolist()) == list(range(store.n_genes))


def test_landmark_rows_are_the_lake_modz_signatures(small_store, small_lake, tmp_path):
    store, _ = small_store
    cell_file = small_lake[0]
    out = tmp_path / "sig.parquet"
    write_zscore_signatures([cell_file], out)
    table = pq.read_table(out).to_pandas()
    lake = np.stack(table["signature"].to_numpy())
    cols = store.signature_columns(table["sig_id"].tolist())
    ours = store.read_z(cols, store.landmark_rows)
    # The same MODZ weights (from the landmarks), then float16 in the store.
    np.testing.assert_allclose(ours, lake, rtol=2e-3, atol=2e-3)


def test_a_tiny_memory_budget_spills_and_builds_the_same_store(small_store, small_meta, tmp_path):
    store, _ = small_store
    meta, release = small_meta
    report = write_signature_store(
        [ReleaseInput("synthetic", release.matrix_path, meta / "instances.parquet")],
        release.genes,
        tmp_path / "spilled",
        budget_bytes=100_000,
        block_size=300,
    )
    assert report.spilled_profiles > 0
    spilled = SignatureStore(tmp_path / "spilled")
    assert spilled.index.equals(store.index)
    assert spilled.version == store.version  # the version follows the content
    assert np.array_equal(spilled.ranks, store.ranks)
    assert np.array_equal(spilled.zscores, store.zscores)


def test_all_genes_on_request(small_meta, tmp_path):
    meta, release = small_meta
    report = write_signature_store(
        [ReleaseInput("synthetic", release.matrix_path, meta / "instances.parquet")],
        release.genes,
        tmp_path / "all",
        gene_space="all",
    )
    assert report.n_genes == 12_328
    assert SignatureStore(tmp_path / "all").gene_space == "all"


def test_bing_space_of_the_real_gene_table(real_dir):
    genes = canonical_genes(read_info_table(real_dir / "gene_info_n12328.txt"))
    space = space_genes(genes, "bing")
    assert len(space) == 7_367  # the fixture's (approximate) pr_is_bing flags
    assert space["is_landmark"].iloc[:978].all() and not space["is_landmark"].iloc[978:].any()


def test_no_bing_flags_is_refused(small_meta):
    _, release = small_meta
    genes = release.genes.assign(is_bing=pd.array([pd.NA] * len(release.genes), "boolean"))
    with pytest.raises(L1000InputError, match="no BING flags"):
        space_genes(genes, "bing", path="genes.parquet")


def test_non_finite_profile_is_refused(small_meta, tmp_path):
    meta, release = small_meta
    bad = tmp_path / release.matrix_path.name
    bad.write_bytes(release.matrix_path.read_bytes())
    inst = pd.read_parquet(meta / "instances.parquet")
    victim = inst.loc[inst["profile_class"] != "control", "inst_id"].iloc[5]
    with h5py.File(bad, "r+") as f:
        ids = [x.decode() for x in f["0/META/COL/id"][()]]
        f["0/DATA/0/matrix"][ids.index(victim), 3] = np.nan
    with pytest.raises(L1000InputError, match=victim):
        write_signature_store(
            [ReleaseInput("synthetic", bad, meta / "instances.parquet")],
            release.genes,
            tmp_path / "store",
        )
    assert not (tmp_path / "store").exists()


def test_a_matrix_that_is_not_zscores_is_refused(small_meta, tmp_path):
    meta, release = small_meta
    level3 = tmp_path / release.matrix_path.name
    level3.write_bytes(release.matrix_path.read_bytes())
    with h5py.File(level3, "r+") as f:
        matrix = f["0/DATA/0/matrix"]
        for s in range(0, matrix.shape[0], 500):
            matrix[s : s + 500] = np.abs(matrix[s : s + 500]) + 3.0  # like log2 expression
    inputs = [ReleaseInput("synthetic", level3, meta / "instances.parquet")]
    with pytest.raises(L1000InputError, match="not level-4 z-scores.*no negative value") as info:
        write_signature_store(inputs, release.genes, tmp_path / "store")
    assert str(level3) in str(info.value) and "allow_non_zscores" in str(info.value)
    report = write_signature_store(
        inputs, release.genes, tmp_path / "store", allow_non_zscores=True
    )
    assert report.n_signatures > 0
