"""Profile, signature and perturbagen embeddings and MODZ signatures from a lake."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from l1000_assets.core.embeddings.aggregates import (
    signature_ids,
    write_perturbagen_embeddings,
    write_profile_embeddings,
    write_signature_embeddings,
)
from l1000_assets.core.embeddings.modz import modz, write_zscore_signatures
from l1000_assets.core.embeddings.vectors import (
    EMBEDDING_COLUMN,
    embedding_dim,
    read_embeddings,
    recorded_model_version,
)
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.lake.read import landmark_matrix
from l1000_assets.core.lake.schema import N_LANDMARKS, profile_schema

DIM = 8


def projection(seed: int = 0):
    w = np.random.default_rng(seed).normal(size=(N_LANDMARKS, DIM)).astype(np.float32)

    def embed(x: np.ndarray) -> np.ndarray:
        z = x @ w
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    return embed


def write_lake_file(path, cell: str, n: int, seed: int):
    """A lake file: perturbagens p0..p4 at two doses and two times, 1-4 replicates."""
    rng = np.random.default_rng(seed)
    perts = rng.integers(0, 5, n)
    doses = rng.choice([1.11, 10.0], n)
    times = rng.choice([6.0, 24.0], n)
    genes = [str(1000 + i) for i in range(N_LANDMARKS)]
    schema = profile_schema(genes)
    columns = {
        "inst_id": [f"{cell}-{i}" for i in range(n)],
        "pert_id": [f"p{p}" for p in perts],
        "pert_iname": [f"name{p}" for p in perts],
        "pert_type": ["trt_sh" if p == 4 else "trt_cp" for p in perts],
        "cell_id": [cell] * n,
        "pert_dose": doses,
        "pert_dose_unit": ["µM"] * n,
        "pert_time": times,
        "pert_time_unit": ["h"] * n,
        "rna_plate": ["plate"] * n,
        "det_plate": [None] * n,
        "release": ["r1"] * n,
    }
    values = (rng.normal(size=(n, N_LANDMARKS)) + perts[:, None]).astype(np.float32)
    arrays = [pa.array(columns[f.name], f.type) for f in schema if f.name != "landmarks"]
    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), N_LANDMARKS))
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays, schema=schema), path)
    return path


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("emb_lake")
    landmarks = {
        c: write_lake_file(root / "landmarks" / f"cell_id={c}" / "r1.parquet", c, n, s)
        for c, n, s in (("A549", 120, 1), ("MCF7", 90, 2))
    }
    profiles = {}
    for cell, path in landmarks.items():
        out = root / "profiles" / f"cell_id={cell}" / "embeddings.parquet"
        assert (
            write_profile_embeddings([path], projection(), out, version="v1", batch_size=50)
            == pq.ParquetFile(path).metadata.num_rows
        )
        profiles[cell] = out
    return root, landmarks, profiles


def test_profile_embeddings_keep_metadata_and_are_unit_vectors(lake):
    _, landmarks, profiles = lake
    source = pq.read_table(landmarks["A549"])
    meta, z = read_embeddings(profiles["A549"], ["inst_id", "pert_id", "pert_dose"])
    assert meta.column("inst_id").to_pylist() == source.column("inst_id").to_pylist()
    assert z.shape == (source.num_rows, DIM)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(z, projection()(landmark_matrix(source)), atol=1e-6)
    schema = pq.read_schema(profiles["A549"])
    assert schema.field(EMBEDDING_COLUMN).type == pa.list_(pa.float32(), DIM)
    assert embedding_dim(profiles["A549"]) == DIM
    assert recorded_model_version(profiles["A549"]) == "v1"


def test_signature_embeddings_are_renormalized_replicate_means(lake, tmp_path):
    _, _, profiles = lake
    out = tmp_path / "signatures.parquet"
    n = write_signature_embeddings(list(profiles.values()), out)
    meta, z = read_embeddings(out, ["sig_id", "cell_id", "n_replicates"])
    assert meta.num_rows == n
    assert meta.column("sig_id").to_pandas().is_unique
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    table = pq.read_table(profiles["A549"])
    ids = signature_ids(table)
    x = read_embeddings(profiles["A549"], [])[1]
    sigs = meta.to_pandas()
    for _, row in sigs[sigs["cell_id"] == "A549"].head(8).iterrows():
        members = x[ids == row["sig_id"]]
        mean = members.mean(axis=0)
        np.testing.assert_allclose(z[_], mean / np.linalg.norm(mean), atol=1e-5)
        assert row["n_replicates"] == len(members)
    assert sigs["n_replicates"].sum() == sum(
        pq.ParquetFile(p).metadata.num_rows for p in profiles.values()
    )
    assert sigs["sig_id"].iloc[0].count(":") == 3  # cell:pert:dose unit:time unit


def test_perturbagen_embeddings_overall_and_per_cell_line(lake, tmp_path):
    _, _, profiles = lake
    out = tmp_path / "perturbagens.parquet"
    n = write_perturbagen_embeddings(list(profiles.values()), out)
    meta, z = read_embeddings(
        out, ["pert_id", "pert_type", "cell_id", "n_profiles", "n_signatures", "n_cell_lines"]
    )
    df = meta.to_pandas()
    assert len(df) == n
    overall = df[df["cell_id"].isna()]
    assert sorted(overall["pert_id"]) == [f"p{i}" for i in range(5)]
    assert set(overall["n_cell_lines"]) == {2}
    all_x = np.concatenate([read_embeddings(p, [])[1] for p in profiles.values()])
    all_perts = np.concatenate(
        [
            pq.read_table(p, columns=["pert_id"]).column("pert_id").to_numpy(zero_copy_only=False)
            for p in profiles.values()
        ]
    )
    for i, row in overall.iterrows():
        mean = all_x[all_perts == row["pert_id"]].mean(axis=0)
        np.testing.assert_allclose(z[i], mean / np.linalg.norm(mean), atol=1e-5)
        assert row["n_profiles"] == (all_perts == row["pert_id"]).sum()
    per_cell = df[df["cell_id"] == "MCF7"]
    mcf7 = read_embeddings(profiles["MCF7"], ["pert_id"])
    perts = mcf7[0].column("pert_id").to_numpy(zero_copy_only=False)
    for i, row in per_cell.iterrows():
        mean = mcf7[1][perts == row["pert_id"]].mean(axis=0)
        np.testing.assert_allclose(z[i], mean / np.linalg.norm(mean), atol=1e-5)
    sigs = write_signature_embeddings(list(profiles.values()), tmp_path / "s.parquet")
    assert (
        per_cell["n_signatures"].sum() + df[df["cell_id"] == "A549"]["n_signatures"].sum() == sigs
    )
    assert overall["n_signatures"].sum() == sigs
    assert (overall.set_index("pert_id")["pert_type"]["p4"]) == "trt_sh"


def test_zscore_signatures_are_modz_of_the_replicates(lake, tmp_path):
    _, landmarks, profiles = lake
    out = tmp_path / "zscore.parquet"
    # Small batches: signatures straddle batch boundaries.
    n = write_zscore_signatures([landmarks["A549"]], out, batch_size=7, memory_limit_mb=64)
    table = pq.read_table(out)
    assert table.num_rows == n
    assert table.schema.field("signature").type == pa.list_(pa.float32(), N_LANDMARKS)
    source = pq.read_table(landmarks["A549"])
    ids = signature_ids(source)
    x = landmark_matrix(source)
    got = dict(
        zip(
            table.column("sig_id").to_pylist(),
            table.column("signature").to_numpy(zero_copy_only=False),
        )
    )
    assert set(got) == set(ids)
    for sig_id in list(got)[:10]:
        expected, _ = modz(x[ids == sig_id])
        np.testing.assert_allclose(np.asarray(got[sig_id]), expected, rtol=1e-5, atol=1e-5)
    replicates = dict(
        zip(table.column("sig_id").to_pylist(), table.column("n_replicates").to_pylist())
    )
    assert all(replicates[s] == (ids == s).sum() for s in got)
    # Same sig_id as the signature embeddings.
    write_signature_embeddings([profiles["A549"]], tmp_path / "s.parquet")
    assert set(pq.read_table(tmp_path / "s.parquet").column("sig_id").to_pylist()) == set(got)


def test_signature_ids_format_numbers_and_missing_values():
    table = pa.table(
        {
            "cell_id": ["A", "A"],
            "pert_id": ["p", "q"],
            "pert_dose": [10.0, None],
            "pert_dose_unit": ["uM", None],
            "pert_time": [24.0, 6.5],
            "pert_time_unit": ["h", "h"],
        }
    )
    assert signature_ids(table).tolist() == ["A:p:10uM:24h", "A:q::6.5h"]


def test_profile_embeddings_of_different_models_are_refused(lake, tmp_path):
    _, landmarks, profiles = lake
    other = tmp_path / "profiles" / "cell_id=MCF7" / "embeddings.parquet"
    write_profile_embeddings([landmarks["MCF7"]], projection(), other, version="v2")
    with pytest.raises(L1000InputError, match="2 different models"):
        write_signature_embeddings([profiles["A549"], other], tmp_path / "s.parquet")
    with pytest.raises(L1000InputError, match="no profile embeddings"):
        write_perturbagen_embeddings([], tmp_path / "p.parquet")
    assert not (tmp_path / "s.parquet").exists()


def test_a_failed_write_keeps_the_previous_file(lake, tmp_path):
    _, landmarks, _ = lake
    out = tmp_path / "e.parquet"
    write_profile_embeddings([landmarks["A549"]], projection(), out, version="v1")
    before = out.read_bytes()

    def broken(x):
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError):
        write_profile_embeddings([landmarks["A549"]], broken, out, version="v2")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.parquet"]
    assert pd.read_parquet(out).shape[0] == 120


def test_normalize_rows_in_place_and_by_blocks(monkeypatch):
    import l1000_assets.core.embeddings.vectors as vectors
    from l1000_assets.core.embeddings.vectors import normalize_rows

    rng = np.random.default_rng(4)
    x64 = rng.normal(size=(50, 7)) * rng.exponential(size=(50, 1))
    x64[3] = 0.0
    expected = (x64 / np.linalg.norm(np.where(x64 == 0, 1, x64), axis=1, keepdims=True)).astype(
        np.float32
    )
    expected[3] = 0.0
    once = normalize_rows(x64)
    assert once.dtype == np.float32
    np.testing.assert_array_equal(once, expected)
    # float32 input of the same values, in place, in blocks of 3 rows: the same bits.
    x32 = x64.astype(np.float32)
    monkeypatch.setattr(vectors, "_NORMALIZE_BLOCK", 21)
    assert normalize_rows(x32, out=x32) is x32
    np.testing.assert_array_equal(x32, normalize_rows(x64.astype(np.float32).astype(np.float64)))
    with pytest.raises(ValueError, match="float32"):
        normalize_rows(x64, out=np.empty((50, 7)))
