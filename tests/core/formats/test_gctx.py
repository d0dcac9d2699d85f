"""The h5py GCTX reader and writer: selected rows in column blocks, bad files, atomicity."""

import h5py
import numpy as np
import pytest

from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats import gctx
from l1000_assets.core.formats.gctx import (
    COL_IDS_NODE,
    MATRIX_NODE,
    GctxReader,
    GctxWriter,
    decode_strings,
)

CORE_A = "CORE_A_level4_ZSPCINF_n40x12328.gctx"


def _write(path, values, row_ids=None, col_ids=None, chunks=(16, 8)):
    n_cols, n_rows = values.shape
    row_ids = row_ids or [f"g{i}" for i in range(n_rows)]
    col_ids = col_ids or [f"s{i}" for i in range(n_cols)]
    with GctxWriter(path, row_ids, n_cols, chunks=chunks) as w:
        half = n_cols // 2
        w.write_block(col_ids[:half], values[:half])
        w.write_block(col_ids[half:], values[half:])
    return row_ids, col_ids


@pytest.fixture
def matrix():
    return np.random.default_rng(0).standard_normal((50, 20)).astype(np.float32)


@pytest.mark.parametrize("block_size", [1, 7, 16, 50, 1000])
def test_selected_rows_in_requested_order_any_block_size(tmp_path, matrix, block_size):
    path = tmp_path / "m.gctx"
    row_ids, _ = _write(path, matrix)
    wanted = ["g13", "g2", "g19", "g5"]
    with GctxReader(path) as r:
        rows = r.row_positions(wanted)
        blocks = list(r.iter_blocks(rows, block_size=block_size))
    assert all(b.values.shape[0] <= block_size for b in blocks)
    got = np.concatenate([b.values for b in blocks])
    np.testing.assert_array_equal(got, matrix[:, [13, 2, 19, 5]])
    assert [b.start for b in blocks] == list(range(0, 50, block_size))


def test_writer_chunks_and_ids(tmp_path, matrix):
    path = tmp_path / "m.gctx"
    _, col_ids = _write(path, matrix, chunks=(16, 8))
    with GctxReader(path) as r:
        assert r.shape == (20, 50)
        assert r.chunks == (16, 8)
        assert list(r.col_ids) == col_ids
        np.testing.assert_array_equal(r.read(), matrix)


def test_real_gctx_matches_raw_h5py(real_dir):
    path = real_dir / CORE_A
    with h5py.File(path, "r") as f:
        raw = f[MATRIX_NODE][()]
    with GctxReader(path) as r:
        assert r.shape == (12_328, 40)
        rows = r.row_positions(r.row_ids[[977, 0, 5000, 12_327]])
        got = r.read(rows, block_size=9)
        meta = r.col_metadata(["pert_iname", "cell_id", "moa"])
    np.testing.assert_array_equal(got, raw[:, [977, 0, 5000, 12_327]])
    assert (meta["cell_id"] == "KJ100").all()
    assert meta["moa"].isna().sum() == 4  # the file's -666 sentinels become <NA>


def test_missing_file(tmp_path):
    with pytest.raises(L1000InputError, match="nothere.gctx: file not found"):
        GctxReader(tmp_path / "nothere.gctx")


def test_truncated_file(tmp_path, matrix):
    path = tmp_path / "m.gctx"
    _write(path, matrix)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(L1000InputError, match=r"m\.gctx: .*truncated or corrupt"):
        with GctxReader(path) as r:
            r.read()


def test_hdf5_without_gctx_nodes(tmp_path):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros((3, 3))
    with pytest.raises(L1000InputError, match=r"plain\.h5: HDF5 file lacks the GCTX node"):
        GctxReader(path)


def test_ids_that_do_not_match_the_matrix(tmp_path, matrix):
    path = tmp_path / "m.gctx"
    _write(path, matrix)
    with h5py.File(path, "a") as f:
        del f[COL_IDS_NODE]
        f[COL_IDS_NODE] = np.array([b"a", b"b"])
    with pytest.raises(L1000InputError, match="do not match the matrix"):
        GctxReader(path)


def test_unknown_row_ids_are_named(tmp_path, matrix):
    path = tmp_path / "m.gctx"
    _write(path, matrix)
    with GctxReader(path) as r, pytest.raises(L1000InputError, match="'nope'"):
        r.row_positions(["g1", "nope"])


def test_non_finite_values_name_the_sample(tmp_path, matrix):
    matrix[17, 3] = np.nan
    path = tmp_path / "m.gctx"
    _write(path, matrix)
    with GctxReader(path) as r, pytest.raises(L1000InputError, match="non-finite.*'s17'"):
        r.read(block_size=8)


def test_failed_write_keeps_the_previous_file(tmp_path, matrix):
    path = tmp_path / "m.gctx"
    _write(path, matrix)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with GctxWriter(path, [f"g{i}" for i in range(20)], 50) as w:
            w.write_block(["x"], matrix[:1])
            raise RuntimeError("simulated crash mid-write")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.gctx"]


def test_incomplete_write_is_refused(tmp_path, matrix):
    path = tmp_path / "m.gctx"
    w = GctxWriter(path, [f"g{i}" for i in range(20)], 50)
    w.write_block(["x"], matrix[:1])
    with pytest.raises(ValueError, match="only 1 of 50 columns"):
        w.close()
    assert not path.exists()


def test_column_ids_read_in_slices_decode_as_a_whole(tmp_path):
    ids = [b"P1:A01", "P1:\xe9t\xe9".encode("latin-1"), "P1:\u00e9".encode(), b"P2:B02", b"P3"]
    with h5py.File(tmp_path / "ids.h5", "w") as f:
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype("ascii"))
        f.create_dataset("fixed", data=np.array([b"a", b"bc", b"d"], dtype="S2"))
        expected = decode_strings(f["ids"][()]).tolist()
        assert expected[1] == "P1:\xe9t\xe9" and expected[2] == "P1:\u00e9"
        for step in (1, 2, 5, 100):
            assert gctx._arrow_ids(f["ids"], step).to_pylist() == expected
        assert gctx._arrow_ids(f["fixed"], 2).to_pylist() == ["a", "bc", "d"]
