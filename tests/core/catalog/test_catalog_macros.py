"""The read-across macros of sql/ on a catalog built from the small synthetic lake: the same
top k as numpy brute force, bound parameters only, typed FLOAT[d] tables."""

import shutil

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.stats import hypergeom

from l1000_assets.core.catalog.build import build_catalog, connect_read_only
from l1000_assets.core.embeddings.aggregates import (
    write_perturbagen_embeddings,
    write_profile_embeddings,
    write_signature_embeddings,
)
from l1000_assets.core.embeddings.modz import write_zscore_signatures
from l1000_assets.core.embeddings.vectors import read_embeddings
from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.releases.local import open_release
from tests.conftest import REPO

DIM = 16  # not the default 32: the tables take their width from the files
K = 10


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, small_release, small_lake):
    root = tmp_path_factory.mktemp("macros")
    lake = root / "lake"
    shutil.copytree(small_lake[0].parent.parent, lake / "landmark_profiles")
    release = open_release("synthetic", small_release.root)
    meta = lake / "metadata" / "release=synthetic"
    meta.mkdir(parents=True)
    for name in ("genes", "perturbagens", "instances", "cell_lines"):
        getattr(release, name).to_parquet(meta / f"{name}.parquet", index=False)
    w = np.random.default_rng(5).normal(size=(N_LANDMARKS, DIM)).astype(np.float32)

    def embed(x):
        z = x @ w
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    emb = lake / "embeddings"
    profile_files = []
    for cell_dir in sorted((lake / "landmark_profiles").iterdir()):
        files = sorted(cell_dir.glob("*.parquet"))
        out = emb / "profiles" / cell_dir.name / "embeddings.parquet"
        write_profile_embeddings(files, embed, out, version="test")
        write_zscore_signatures(
            files, lake / "zscore_signatures" / cell_dir.name / "signatures.parquet"
        )
        profile_files.append(out)
    write_signature_embeddings(profile_files, emb / "signatures.parquet")
    write_perturbagen_embeddings(profile_files, emb / "perturbagens.parquet")
    report = build_catalog(root / "c.duckdb", REPO / "sql", lake)
    assert not [h for h in report.skipped if "embedding" in h or "zscore" in h]
    return root / "c.duckdb", lake


def perturbagens(lake, cell=None, pert_type=None):
    meta, x = read_embeddings(
        lake / "embeddings" / "perturbagens.parquet",
        ["pert_id", "pert_iname", "pert_type", "cell_id"],
    )
    df = meta.to_pandas()
    keep = (df["cell_id"].isna() if cell is None else df["cell_id"] == cell).to_numpy()
    if pert_type:
        keep = keep & (df["pert_type"] == pert_type).to_numpy()
    return df[keep].reset_index(drop=True), x[keep]


def brute_force(x, ids, q, k, exclude=None):
    sims = x @ q
    order = [i for i in np.argsort(-sims, kind="stable") if ids[i] != exclude][:k]
    return [ids[i] for i in order], sims[order]


def test_embeddings_are_typed_arrays(catalog):
    db, _ = catalog
    with connect_read_only(db) as con:
        types = dict(
            con.execute(
                "SELECT table_name || '.' || column_name, data_type FROM duckdb_columns() "
                "WHERE column_name IN ('embedding', 'signature')"
            ).fetchall()
        )
    assert types["perturbagen_embeddings.embedding"] == f"FLOAT[{DIM}]"
    assert types["signature_embeddings.embedding"] == f"FLOAT[{DIM}]"
    assert types["profile_embeddings.embedding"] == f"FLOAT[{DIM}]"
    assert types["zscore_signatures.signature"] == f"FLOAT[{N_LANDMARKS}]"


@pytest.mark.parametrize("cell, pert_type", [(None, None), (None, "trt_cp"), ("first", None)])
def test_nearest_to_matches_numpy(catalog, cell, pert_type):
    db, lake = catalog
    if cell == "first":
        cell = sorted(p.name.split("=")[1] for p in (lake / "landmark_profiles").iterdir())[0]
    df, x = perturbagens(lake, cell, pert_type)
    rng = np.random.default_rng(1)
    with connect_read_only(db) as con:
        for _ in range(5):
            q = rng.normal(size=DIM).astype(np.float32)
            q /= np.linalg.norm(q)
            rows = con.execute(
                f"SELECT rank, pert_id, similarity, cell_id FROM nearest_to(?::FLOAT[{DIM}], "
                "k := ?, in_cell := ?, of_type := ?)",
                [q.tolist(), K, cell, pert_type],
            ).fetchall()
            ids, sims = brute_force(x, df["pert_id"].to_numpy(), q, K)
            assert [r[1] for r in rows] == ids
            assert [r[0] for r in rows] == list(range(1, K + 1))
            np.testing.assert_allclose([r[2] for r in rows], sims, rtol=1e-5, atol=1e-6)
            assert {r[3] for r in rows} == {cell}


def test_similar_perturbagens_matches_numpy_and_annotates(catalog):
    db, lake = catalog
    df, x = perturbagens(lake)
    ann = pd.read_parquet(lake / "metadata" / "release=synthetic" / "perturbagens.parquet")
    moa = dict(zip(ann["pert_id"], ann["moa"].astype(object)))
    with connect_read_only(db) as con:
        for i in (0, 7, 19):
            pert = df["pert_id"][i]
            rows = con.execute(
                "SELECT query_pert_id, rank, pert_id, similarity, moa "
                "FROM similar_perturbagens(?, k := ?)",
                [pert, K],
            ).fetchall()
            ids, sims = brute_force(x, df["pert_id"].to_numpy(), x[i], K, exclude=pert)
            assert [r[2] for r in rows] == ids and {r[0] for r in rows} == {pert}
            np.testing.assert_allclose([r[3] for r in rows], sims, rtol=1e-5, atol=1e-6)
            for r in rows:
                known = moa.get(r[2])
                assert r[4] == (None if pd.isna(known) or known == "-666" else known)
        by_name = con.execute(
            "SELECT pert_id FROM similar_perturbagens(?, k := ?)", [df["pert_iname"][7], K]
        ).fetchall()
        assert [r[0] for r in by_name] == brute_force(
            x, df["pert_id"].to_numpy(), x[7], K, exclude=df["pert_id"][7]
        )[0]


def test_similar_signatures_with_filters_and_zscore_baseline(catalog):
    db, lake = catalog
    meta, x = read_embeddings(
        lake / "embeddings" / "signatures.parquet",
        ["sig_id", "pert_type", "pert_dose", "pert_time"],
    )
    sigs = meta.to_pandas()
    z = pq.read_table(
        db.parent
        / "lake"
        / "zscore_signatures"
        / sorted(p.name for p in (lake / "zscore_signatures").iterdir())[0]
        / "signatures.parquet"
    )
    query = z.column("sig_id")[0].as_py()
    i = int(np.flatnonzero(sigs["sig_id"] == query)[0])
    dose, hours = float(sigs["pert_dose"][i]), float(sigs["pert_time"][i])
    keep = ((sigs["pert_dose"] == dose) & (sigs["pert_time"] == hours)).to_numpy()
    with connect_read_only(db) as con:
        rows = con.execute(
            "SELECT sig_id, similarity FROM similar_signatures(?, k := ?, "
            "at_dose := ?, at_time := ?)",
            [query, K, dose, hours],
        ).fetchall()
        ids, sims = brute_force(x[keep], sigs["sig_id"].to_numpy()[keep], x[i], K, exclude=query)
        assert [r[0] for r in rows] == ids
        np.testing.assert_allclose([r[1] for r in rows], sims, rtol=1e-5, atol=1e-6)

        all_z = con.execute("SELECT sig_id, signature FROM zscore_signatures").fetchall()
        zx = np.array([r[1] for r in all_z], np.float64)
        zx /= np.linalg.norm(zx, axis=1, keepdims=True)
        zid = np.array([r[0] for r in all_z], object)
        rows = con.execute(
            "SELECT sig_id, similarity FROM similar_zscore_signatures(?, k := ?)", [query, K]
        ).fetchall()
        ids, sims = brute_force(zx, zid, zx[list(zid).index(query)], K, exclude=query)
        assert [r[0] for r in rows] == ids
        np.testing.assert_allclose([r[1] for r in rows], sims, rtol=1e-4, atol=1e-5)
        vec = x[i].tolist()
        rows = con.execute(
            f"SELECT sig_id FROM nearest_signatures(?::FLOAT[{DIM}], k := 3)", [vec]
        ).fetchall()
        assert rows[0][0] == query


def test_moa_enrichment_is_a_hypergeometric_tail(catalog):
    db, lake = catalog
    df, x = perturbagens(lake)
    with connect_read_only(db) as con:
        moas = dict(con.execute("SELECT pert_id, moa FROM perturbagen_annotations").fetchall())
        pert = next(p for p in df["pert_id"] if moas.get(p))
        rows = con.execute(
            "SELECT moa, n_hits_moa, n_hits, n_moa, n_candidates, "
            "fold_enrichment, p_value FROM moa_enrichment(?, k := ?)",
            [pert, 15],
        ).df()
    hits, _ = brute_force(
        x, df["pert_id"].to_numpy(), x[df.index[df["pert_id"] == pert][0]], 15, exclude=pert
    )
    candidates = [p for p in df["pert_id"] if p != pert]
    assert len(rows) and (rows["n_candidates"] == len(candidates)).all()

    # A perturbagen counts for every MOA of its |-separated list (real annotations have
    # several), as perturbagen_moas splits them.
    def has(p, moa):
        return moa in {m.strip() for m in (moas.get(p) or "").split("|")}

    for _, r in rows.iterrows():
        in_hits = sum(has(p, r["moa"]) for p in hits)
        in_all = sum(has(p, r["moa"]) for p in candidates)
        assert (r["n_hits_moa"], r["n_hits"], r["n_moa"]) == (in_hits, 15, in_all)
        assert r["p_value"] == pytest.approx(
            hypergeom.sf(in_hits - 1, len(candidates), in_all, 15), rel=1e-6
        )
        assert r["fold_enrichment"] == pytest.approx(in_hits / (15 * in_all / len(candidates)))
    assert rows["p_value"].is_monotonic_increasing


def test_values_are_bound_never_spliced(catalog):
    db, lake = catalog
    with connect_read_only(db) as con:
        for evil in ("x' OR '1'='1", "'; DROP TABLE perturbagen_embeddings; --"):
            assert (
                con.execute("SELECT * FROM similar_perturbagens(?, k := ?)", [evil, 5]).fetchall()
                == []
            )
            assert (
                con.execute(
                    "SELECT * FROM nearest_to(?::FLOAT[16], k := ?, in_cell := ?)",
                    [[0.25] * DIM, 5, evil],
                ).fetchall()
                == []
            )
        n = con.execute("SELECT count(*) FROM perturbagen_embeddings").fetchall()[0][0]
        assert n == len(pd.read_parquet(lake / "embeddings" / "perturbagens.parquet"))
        with pytest.raises(duckdb.Error):
            con.execute("DELETE FROM perturbagen_embeddings")  # read-only


def test_macros_bind_before_any_embedding_exists(tmp_path):
    (tmp_path / "lake").mkdir()
    report = build_catalog(tmp_path / "c.duckdb", REPO / "sql", tmp_path / "lake")
    assert "CREATE OR REPLACE TABLE perturbagen_embeddings AS" in report.skipped
    with connect_read_only(tmp_path / "c.duckdb") as con:
        assert con.execute("SELECT * FROM similar_perturbagens(?, k := 5)", ["p"]).fetchall() == []
        assert con.execute("SELECT * FROM nearest_to(?::FLOAT[32])", [[0.1] * 32]).fetchall() == []
        assert con.execute("SELECT count(*) FROM read_across_moa_enrichment").fetchall() == [(0,)]
