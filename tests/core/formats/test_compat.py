"""cmapPy 4.0.1 on numpy 2 / pandas 3 through the compatibility layer, checked against h5py."""

import numpy as np
import pandas as pd
import pytest

from l1000_assets.core.formats import compat
from l1000_assets.core.formats.gct import GctReader
from l1000_assets.core.formats.gctx import GctxReader, GctxWriter

CORE_A = "CORE_A_level4_ZSPCINF_n40x12328.gctx"
LJP005 = "LJP005_A375_24H_level4_n377x978.gct"
KD017 = "KD017_shRNA_plate_n374x976.gct"


def test_unpatched_cmappy_fails_on_pandas_3():
    """The reason for the shim: pandas 3 removed to_numeric(errors="ignore")."""
    with pytest.raises(ValueError):
        pd.to_numeric(pd.Series(["a"]), errors="ignore")
    assert not hasattr(np, "string_")


def test_agg_wt_avg_on_pandas_3():
    """cmapPy's MODZ fills the diagonal of DataFrame.values, read-only under pandas 3."""
    with pytest.raises(ValueError, match="read-only"):
        np.fill_diagonal(pd.DataFrame(np.eye(3)).values, np.nan)
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    mat = pd.DataFrame({"r1": x, "r2": 2 * x, "r3": x[::-1]})
    signature, upper, raw, weights = compat.agg_wt_avg(mat)
    # The upper triangle only, negatives clipped, as on pandas 2.
    assert upper.to_dict("list") == {
        "index": ["r1", "r1", "r2"],
        "rid": ["r2", "r3", "r3"],
        "corr": [1.0, 0.0, 0.0],
    }
    assert raw.to_dict() == {"r1": 0.5, "r2": 0.5, "r3": 0.01}
    assert weights.to_dict() == {"r1": 0.495, "r2": 0.495, "r3": 0.0099}
    np.testing.assert_allclose(signature, mat.to_numpy() @ weights.to_numpy())
    # The caller's frame is left as it was; numpy itself is not patched.
    np.testing.assert_array_equal(mat["r1"], x)
    assert not pd.DataFrame(np.eye(2)).values.flags.writeable
    single, none, *_ = compat.agg_wt_avg(mat[["r1"]])
    assert none is None and single.equals(mat[["r1"]])


def test_parse_real_gctx_matches_h5py_reader(real_dir):
    gctoo = compat.parse(real_dir / CORE_A)
    with GctxReader(real_dir / CORE_A) as r:
        values = r.read()
        assert list(gctoo.data_df.index) == list(r.row_ids)
        assert list(gctoo.data_df.columns) == list(r.col_ids)
    np.testing.assert_array_equal(gctoo.data_df.to_numpy().T, values)
    assert gctoo.col_metadata_df.loc[r.col_ids[0], "pert_iname"] == "erythromycin"


def test_gctx_round_trip_through_cmappy_writer(real_dir, tmp_path):
    gctoo = compat.parse(real_dir / CORE_A)
    out = tmp_path / "copy.gctx"
    compat.write(gctoo, out)
    again = compat.parse(out)
    with GctxReader(out) as r:
        np.testing.assert_array_equal(r.read(), gctoo.data_df.to_numpy().T)
    np.testing.assert_array_equal(again.data_df.to_numpy(), gctoo.data_df.to_numpy())
    # cmapPy writes the -666 sentinel and reads it back as missing.
    before = gctoo.col_metadata_df.replace("-666", np.nan)
    pd.testing.assert_frame_equal(again.col_metadata_df, before, check_dtype=False)


def test_our_writer_is_readable_by_cmappy(tmp_path):
    values = np.random.default_rng(1).standard_normal((30, 12)).astype(np.float32)
    genes = [str(1000 + i) for i in range(12)]
    samples = [f"PLATE_X1:A{i:02d}" for i in range(30)]
    path = tmp_path / "ours.gctx"
    with GctxWriter(path, genes, 30, chunks=(8, 4)) as w:
        w.write_block(samples[:11], values[:11])
        w.write_block(samples[11:], values[11:])
        w.write_col_metadata({"pert_type": ["trt_cp"] * 30, "pert_dose": np.full(30, 10.0)})
    gctoo = compat.parse(path)
    np.testing.assert_array_equal(gctoo.data_df.to_numpy().T, values)
    assert list(gctoo.data_df.columns) == samples
    assert (gctoo.col_metadata_df["pert_dose"] == 10.0).all()


def test_parse_with_rid_returns_file_order(real_dir):
    """A known cmapPy quirk the h5py reader avoids: rid= selections come back in file order."""
    gctoo = compat.parse(real_dir / CORE_A)
    wanted = list(gctoo.data_df.index[[10, 3]])
    subset = compat.parse(real_dir / CORE_A, rid=wanted)
    assert list(subset.data_df.index) == sorted(wanted, key=list(gctoo.data_df.index).index)
    with GctxReader(real_dir / CORE_A) as r:
        ours = r.read(r.row_positions(wanted))
    np.testing.assert_array_equal(ours, gctoo.data_df.loc[wanted].to_numpy().T)


def test_real_gct_text_files(real_dir):
    ljp = GctReader(real_dir / LJP005)
    assert ljp.values.shape == (377, 978)
    assert ljp.row_metadata()["pr_gene_id"].notna().all()
    assert set(ljp.col_metadata()["pert_type"]) >= {"trt_cp", "ctl_vehicle"}
    kd = GctReader(real_dir / KD017)
    assert kd.values.shape == (374, 976)  # two landmarks are missing from this plate
    assert "trt_sh" in set(kd.col_metadata()["pert_type"])


def test_gct_text_round_trip(real_dir, tmp_path):
    gctoo = compat.parse(real_dir / LJP005)
    compat.write(gctoo, tmp_path / "copy.gct")
    again = GctReader(tmp_path / "copy.gct")
    np.testing.assert_allclose(again.values, gctoo.data_df.to_numpy().T, rtol=0, atol=1e-4)


def test_bad_gct_is_named(tmp_path):
    bad = tmp_path / "bad.gct"
    bad.write_text("#1.3\nthis is not a gct\n")
    with pytest.raises(ValueError, match=r"bad\.gct: not a valid GCT file"):
        GctReader(bad)
