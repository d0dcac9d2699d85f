"""Finding a release's files and checking that matrix and metadata agree."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.gctx import GctxWriter
from l1000_assets.core.releases.local import find_release_files
from l1000_assets.core.releases.reconcile import SKIP, check_release, match_ids

N_GENES = 1_000


def _mini_release(root, *, inst_ids=None, matrix_ids=None, n_landmarks=978, gene_ids=None):
    """A tiny release in GEO layout: 1,000 genes (978 landmarks), 4 samples."""
    root.mkdir(parents=True, exist_ok=True)
    genes = [str(100 + i) for i in range(N_GENES)]
    pd.DataFrame(
        {
            "pr_gene_id": genes,
            "pr_gene_symbol": [f"S{g}" for g in genes],
            "pr_is_lm": [1] * n_landmarks + [0] * (N_GENES - n_landmarks),
        }
    ).to_csv(root / "X_gene_info.txt", sep="\t", index=False)
    inst_ids = inst_ids or ["p:A01", "p:A02", "p:A03", "p:A04"]
    matrix_ids = matrix_ids or list(inst_ids)
    pd.DataFrame({"inst_id": inst_ids, "pert_type": "trt_cp"}).to_csv(
        root / "X_inst_info.txt", sep="\t", index=False
    )
    row_ids = gene_ids or genes
    values = np.zeros((len(matrix_ids), len(row_ids)), np.float32)
    with GctxWriter(root / "X_Level4_ZSPCINF_mlr12k_n4x1000.gctx", row_ids, len(matrix_ids)) as w:
        w.write_block(matrix_ids, values)
    return root


def test_consistent_release(tmp_path):
    release = find_release_files(_mini_release(tmp_path / "r"))
    assert release.pert_info is None
    assert check_release(release) == {"n_profiles": 4, "n_genes": 1000, "n_landmarks": 978}


def test_matrix_sample_without_metadata(tmp_path):
    root = _mini_release(
        tmp_path / "r", inst_ids=["p:A01", "p:A02"], matrix_ids=["p:A01", "p:A02", "p:ZZZ"]
    )
    with pytest.raises(L1000InputError, match=r"gctx: 1 sample id\(s\) have no row in .*'p:ZZZ'"):
        check_release(find_release_files(root))


def test_metadata_row_without_profile(tmp_path):
    root = _mini_release(
        tmp_path / "r", inst_ids=["p:A01", "p:A02", "p:GONE"], matrix_ids=["p:A01", "p:A02"]
    )
    with pytest.raises(L1000InputError, match=r"inst_info\.txt: 1 inst_id\(s\) .*'p:GONE'"):
        check_release(find_release_files(root))


def test_duplicate_matrix_ids(tmp_path):
    root = _mini_release(tmp_path / "r", inst_ids=["p:A01", "p:A02"], matrix_ids=["p:A01", "p:A01"])
    with pytest.raises(L1000InputError, match="duplicate column"):
        check_release(find_release_files(root))


def test_missing_landmark_genes(tmp_path):
    genes = [str(100 + i) for i in range(N_GENES)]
    root = _mini_release(tmp_path / "r", gene_ids=genes[2:])
    with pytest.raises(L1000InputError, match=r"2 are missing from the matrix: '100', '101'"):
        check_release(find_release_files(root))


def test_missing_files_are_named(tmp_path):
    root = _mini_release(tmp_path / "r")
    (root / "X_inst_info.txt").unlink()
    with pytest.raises(L1000InputError, match="no inst_info file"):
        find_release_files(root)
    with pytest.raises(L1000InputError, match="release directory not found"):
        find_release_files(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(L1000InputError, match="expected one level-4 GCTX"):
        find_release_files(empty)


def test_match_ids_takes_arrays_in_chunks(tmp_path):
    """Metadata ids from pandas come as Arrow chunks once the frame was concatenated."""
    inst = pd.concat(
        [pd.Series(["p:A02", "p:A01"], dtype="string"), pd.Series(["p:A03"], dtype="string")],
        ignore_index=True,
    )
    inst_ids = pa.array(inst, pa.string())
    assert isinstance(inst_ids, pa.ChunkedArray)
    cols = pa.chunked_array([["p:A01", "p:A02"], ["p:A03", "p:A04"]])
    kwargs = {"matrix_path": tmp_path / "m.gctx", "metadata_path": tmp_path / "inst_info.txt"}
    match = match_ids(inst_ids, cols, on_bad_input=SKIP, **kwargs)
    assert match.rows.tolist() == [1, 0, 2] and match.positions.tolist() == [0, 1, 2]
    assert match.report()["examples_without_metadata"] == "'p:A04'"
    with pytest.raises(L1000InputError, match=r"m\.gctx: 1 profile\(s\) have no row in"):
        match_ids(inst_ids, cols, **kwargs)
