"""LINCS info tables: encodings, -666 sentinels, gzip, schema and id errors."""

import gzip

import pytest

from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.gctx import GctxReader
from l1000_assets.core.formats.info_tables import landmark_gene_ids, read_info_table


def test_real_gene_info_has_978_landmarks(real_dir):
    genes = read_info_table(
        real_dir / "gene_info_n12328.txt", required=["pr_gene_id"], id_column="pr_gene_id"
    )
    assert len(genes) == 12_328
    landmarks = landmark_gene_ids(genes)
    assert len(landmarks) == 978
    with GctxReader(real_dir / "CORE_A_level4_ZSPCINF_n40x12328.gctx") as r:
        assert set(landmarks) <= set(r.row_ids)


def test_real_inst_info_matches_gctx_columns(real_dir):
    inst = read_info_table(real_dir / "CORE_A_inst_info.txt", id_column="cid")
    with GctxReader(real_dir / "CORE_A_level4_ZSPCINF_n40x12328.gctx") as r:
        assert set(inst["cid"]) == set(r.col_ids)
    assert inst["moa"].isna().sum() == 4  # -666 in the file


def test_real_gzipped_pert_info(real_dir):
    perts = read_info_table(real_dir / "lincs_pert_info_moa_target.tsv.gz", id_column="pert_id")
    assert len(perts) == 34_419
    assert perts["MOA"].notna().sum() >= 3_000


def test_latin1_and_sentinels(tmp_path):
    path = tmp_path / "inst_info.txt"
    path.write_bytes(
        "inst_id\tpert_iname\tpert_dose\na\tcaf\xe9ine\t-666\nb\t-666\t10\n".encode("latin-1")
    )
    df = read_info_table(path, id_column="inst_id")
    assert df.loc[0, "pert_iname"] == "caféine"
    assert df["pert_dose"].isna().tolist() == [True, False]
    assert df["pert_iname"].isna().tolist() == [False, True]


def test_gzip_that_ends_early(tmp_path):
    path = tmp_path / "inst_info.txt.gz"
    data = gzip.compress(b"inst_id\tx\n" + b"a\t1\n" * 1000)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(L1000InputError, match=r"inst_info\.txt\.gz: cannot read"):
        read_info_table(path)


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ("", {}, "file is empty"),
        ("inst_id\tx\na\t1\n", {"required": ["inst_id", "pert_id"]}, r"missing required column"),
        (
            "inst_id\tx\na\t1\na\t2\nb\t3\n",
            {"id_column": "inst_id"},
            "duplicate inst_id value.*'a'",
        ),
        ("inst_id\tx\n-666\t1\n", {"id_column": "inst_id"}, "1 row.* have no inst_id"),
    ],
)
def test_bad_tables_name_file_and_problem(tmp_path, content, kwargs, message):
    path = tmp_path / "table.txt"
    path.write_text(content)
    with pytest.raises(L1000InputError, match=rf"table\.txt: .*{message}"):
        read_info_table(path, **kwargs)


def test_missing_table(tmp_path):
    with pytest.raises(L1000InputError, match="file not found"):
        read_info_table(tmp_path / "nope.txt")


@pytest.mark.parametrize("damage", ["bad block", "bad checksum", "truncated", "not gzip"])
def test_a_bad_gzip_body_is_named(tmp_path, damage):
    text = "".join(f"inst_{i}\tBRD-K{i:05d}\ttrt_cp\tA375\n" for i in range(5000))
    gz = bytearray(gzip.compress(("inst_id\tpert_id\tpert_type\tcell_id\n" + text).encode()))
    if damage == "bad block":
        gz[10] = 0xFF  # the first deflate block of a reserved type: zlib.error
    elif damage == "bad checksum":
        gz[-8] ^= 0xFF  # the CRC-32 trailer: gzip.BadGzipFile
    elif damage == "truncated":
        gz = gz[: len(gz) // 2]
    else:
        gz = bytearray(b"plain text, not gzip\n" * 10)
    path = tmp_path / "GSE_inst_info.txt.gz"
    path.write_bytes(bytes(gz))
    with pytest.raises(L1000InputError, match="gzip") as caught:
        read_info_table(path)
    assert str(caught.value).startswith(str(path))
