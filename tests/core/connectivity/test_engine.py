"""Gene-set queries end to end on the small synthetic release: a perturbagen's own signature
finds it, its swapped sets find it as the top reverser, every method and level runs, and bad
scopes are refused."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import false_discovery_control

from l1000_assets.core.connectivity.engine import ConnectivityEngine, QueryOptions, run_files
from l1000_assets.core.connectivity.gene_sets import write_gmt
from l1000_assets.core.connectivity.reference import signature_sets
from l1000_assets.core.connectivity.scoring import rank_test
from l1000_assets.core.errors import L1000InputError


def small_engine(small_store, small_reference, small_meta, **options) -> ConnectivityEngine:
    store, _ = small_store
    reference, _ = small_reference
    meta, _ = small_meta
    return ConnectivityEngine(
        store.path,
        [meta / "genes.parquet"],
        [meta / "perturbagens.parquet"],
        reference_dir=reference.path,
        **options,
    )


@pytest.fixture(scope="module")
def engine(small_store, small_reference, small_meta):
    return small_engine(small_store, small_reference, small_meta)


def own_query(engine, tmp_path, col: int, k: int = 100):
    """A GMT of signature ``col``'s top and bottom ``k`` genes (by symbol), and the same
    sets swapped."""
    store = engine.store
    up, down = signature_sets(store, [col], k)
    symbol = store.genes["symbol"].to_numpy(object)
    return write_gmt(
        tmp_path / "own.gmt",
        [
            ("own", symbol[up[0]].tolist(), symbol[down[0]].tolist()),
            ("swapped", symbol[down[0]].tolist(), symbol[up[0]].tolist()),
        ],
    )


def strongest_signatures(store, n: int) -> list[int]:
    """Columns of strong compound signatures (largest z spread), one per perturbagen."""
    spread = np.abs(np.asarray(store.zscores[:978], np.float32)).mean(axis=0)
    index = store.index.assign(spread=spread)
    cp = index[index["pert_type"] == "trt_cp"].sort_values("spread", ascending=False)
    return cp.drop_duplicates("pert_id").index[:n].tolist()


@pytest.mark.parametrize("method", ["wtcs", "ncs", "tau", "mwu"])
def test_own_signature_finds_its_perturbagen_and_swapped_the_top_reverser(engine, tmp_path, method):
    for col in strongest_signatures(engine.store, 3):
        pert = engine.store.index["pert_id"].iloc[col]
        gmt = own_query(engine, tmp_path, col)
        for direction, name in (("mimickers", "own"), ("reversers", "swapped")):
            options = QueryOptions(method=method, direction=direction, level="signature")
            results, failures = run_files(engine, [gmt], options)
            assert not failures
            result = {r.query.name: r for r in results}[name]
            top = result.hits.iloc[0]
            assert top["pert_id"] == pert
            if method in ("wtcs", "mwu"):  # raw scores: the signature itself is the best one
                assert top["sig_id"] == engine.store.index["sig_id"][col]
            assert (top["score"] > 0) == (direction == "mimickers")


def test_a_perturbagens_consensus_finds_it_first_across_cell_lines(engine, tmp_path):
    """The mean of a perturbagen's signatures, as a query, ranks it first at the
    perturbagen level (signatures summarized per cell line, then over cell lines)."""
    store = engine.store
    symbol = store.genes["symbol"].to_numpy(object)
    found = 0
    cols = strongest_signatures(store, 5)
    for col in cols:
        pert = store.index["pert_id"].iloc[col]
        mine = np.flatnonzero(store.index["pert_id"].to_numpy() == pert)
        mean = store.read_z(mine).mean(axis=0)
        order = np.argsort(-mean, kind="stable")
        gmt = write_gmt(
            tmp_path / "consensus.gmt",
            [("c", symbol[order[:100]].tolist(), symbol[order[-100:]].tolist())],
        )
        (result,), _ = run_files(engine, [gmt], QueryOptions(method="tau", top=5))
        found += result.hits["pert_id"].iloc[0] == pert
        assert pert in result.hits["pert_id"].tolist()
    assert found >= len(cols) - 1


def test_levels_scores_and_statistics(engine, tmp_path):
    col = strongest_signatures(engine.store, 1)[0]
    gmt = own_query(engine, tmp_path, col)
    (own, _), _ = run_files(
        engine, [gmt], QueryOptions(method="tau", level="perturbagen", keep_ranking=True)
    )
    perts = own.ranking
    assert perts["pert_id"].is_unique and perts["cell_id"].isna().all()
    assert perts["tau"].between(-100, 100).all() and perts["wtcs"].abs().max() <= 1
    assert (perts["n_cell_lines"] >= 1).all()
    assert perts["rank"].tolist() == list(range(1, len(perts) + 1))
    assert perts["score"].is_monotonic_decreasing
    (own_cells, _), _ = run_files(
        engine, [gmt], QueryOptions(method="ncs", level="cell", keep_ranking=True)
    )
    (short, _), _ = run_files(engine, [gmt], QueryOptions(method="ncs", level="cell", top=7))
    assert short.ranking.equals(own_cells.ranking.head(7))
    cells = own_cells.ranking
    assert not cells.duplicated(["pert_id", "cell_id"]).any()
    assert cells["score"].equals(cells["ncs"])
    stats = own.enrichment
    assert set(stats["test"]) == {"top_n"}
    assert stats["fdr"].between(0, 1).all() and (stats["fdr"] >= stats["p_value"] - 1e-12).all()
    assert stats["n_hits_term"].le(stats["n_hits"]).all()


@pytest.fixture(scope="module")
def streamed(small_store, small_reference, small_meta):
    """The same engine scoring blocks of about 20 signatures and keeping no WTCS between
    its passes (computed again): what a store too big for the kept bytes gets."""
    return small_engine(small_store, small_reference, small_meta, block_signatures=20, keep_bytes=0)


@pytest.mark.parametrize("method", ["wtcs", "ncs", "tau", "mwu"])
def test_blocks_and_running_tops_change_nothing(engine, streamed, tmp_path, method):
    """Scored block by block with running top rows, the rankings, scores, FDRs and hit
    statistics are those of one block holding every signature."""
    col = strongest_signatures(engine.store, 1)[0]
    gmt = own_query(engine, tmp_path, col)
    cell = engine.store.index["cell_id"].iloc[col]
    assert len(streamed._scope(QueryOptions()).bounds) > 15  # many blocks
    assert len(engine._scope(QueryOptions()).bounds) == 2  # one
    for options in (
        QueryOptions(method=method, level="perturbagen", top=15, enrichment_top=10),
        QueryOptions(method=method, level="cell", direction="reversers", top=9),
        QueryOptions(method=method, level="signature", top=25),
        QueryOptions(method=method, cell=cell, top=12),
        QueryOptions(method=method, level="perturbagen", keep_ranking=True),
    ):
        ours, _ = run_files(streamed, [gmt], options)
        one, _ = run_files(engine, [gmt], options)
        for a, b in zip(ours, one):
            pd.testing.assert_frame_equal(a.ranking, b.ranking)
            pd.testing.assert_frame_equal(a.enrichment, b.enrichment)


def test_rank_test_fdr_is_over_every_signature(streamed, tmp_path):
    col = strongest_signatures(streamed.store, 1)[0]
    up, down = signature_sets(streamed.store, [col], 100)
    gmt = own_query(streamed, tmp_path, col)
    (own, _), _ = run_files(
        streamed, [gmt], QueryOptions(method="mwu", level="signature", keep_ranking=True)
    )
    cols = np.arange(len(streamed.store))
    for side, genes in (("up", up[0]), ("down", down[0])):
        _, p = rank_test(streamed.store, [genes], cols)
        fdr = pd.Series(false_discovery_control(p[0]), index=streamed.store.index["sig_id"])
        expected = fdr[own.ranking["sig_id"]]
        np.testing.assert_allclose(own.ranking[f"fdr_{side}"], expected, rtol=1e-9)


def test_rank_test_reports_sigcom_columns(engine, tmp_path):
    col = strongest_signatures(engine.store, 1)[0]
    gmt = own_query(engine, tmp_path, col)
    (own, swapped), _ = run_files(
        engine, [gmt], QueryOptions(method="mwu", level="signature", top=5)
    )
    top = own.hits.iloc[0]
    assert top["z_up"] > 0 and top["z_down"] > 0  # down genes rank low: reported positive
    assert top["score"] == pytest.approx(top["z_up"] + top["z_down"])
    assert top["fdr_up"] < 1e-6 and top["fdr_down"] < 1e-6


def test_up_only_and_down_only_queries(engine, tmp_path):
    col = strongest_signatures(engine.store, 1)[0]
    store = engine.store
    up, down = signature_sets(store, [col], 50)
    symbol = store.genes["symbol"].to_numpy(object)
    gmt = write_gmt(
        tmp_path / "single.gmt",
        [("u", symbol[up[0]].tolist(), []), ("d", [], symbol[down[0]].tolist())],
    )
    results, failures = run_files(engine, [gmt], QueryOptions(method="wtcs", level="signature"))
    assert not failures
    for result in results:
        assert result.hits["sig_id"].iloc[0] == store.index["sig_id"][col]


def test_scopes_and_refusals(engine, tmp_path):
    col = strongest_signatures(engine.store, 1)[0]
    gmt = own_query(engine, tmp_path, col)
    cell = engine.store.index["cell_id"].iloc[col]
    (own, _), _ = run_files(
        engine, [gmt], QueryOptions(method="wtcs", cell=cell, keep_ranking=True)
    )
    assert (own.ranking["cell_id"] == cell).all()
    (own, _), _ = run_files(
        engine, [gmt], QueryOptions(method="wtcs", pert_type="trt_sh", keep_ranking=True)
    )
    assert (own.ranking["pert_type"] == "trt_sh").all()
    for options, match in (
        (QueryOptions(cell="NOWHERE"), "unknown cell line 'NOWHERE': the store has 'A375'"),
        (QueryOptions(pert_type="trt_xyz"), "unknown perturbagen type 'trt_xyz'"),
    ):
        with pytest.raises(L1000InputError, match=match) as info:
            run_files(engine, [gmt], options)
        assert "index.parquet" in str(info.value)
    bad = tmp_path / "bad.gmt"
    bad.write_text("x_up\t\tNOT_A_GENE\tNOR_THIS\n")
    results, failures = run_files(engine, [bad, gmt], QueryOptions(method="wtcs"))
    assert len(results) == 2 and len(failures) == 1
    assert "NOT_A_GENE" in failures[0].message and str(bad) in failures[0].message


def test_tau_needs_the_reference(small_store, small_meta, tmp_path):
    store, _ = small_store
    meta, _ = small_meta
    engine = ConnectivityEngine(
        store.path, [meta / "genes.parquet"], [meta / "perturbagens.parquet"]
    )
    queries, _ = engine.read([own_query(engine, tmp_path, 0)])
    with pytest.raises(L1000InputError, match="tau needs the reference"):
        engine.run(queries, QueryOptions(method="tau"))
    (result, _) = engine.run(queries, QueryOptions(method="ncs"))
    assert result.ranking["tau"].isna().all() if "tau" in result.ranking else True
