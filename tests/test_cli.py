"""The ``l1000`` command line."""

import json
import random
import subprocess
import sys
from pathlib import Path

L1000 = str(Path(sys.executable).parent / "l1000")


def test_synth_writes_a_release(tmp_path):
    out = subprocess.run(
        [L1000, "synth", "--out", str(tmp_path), "--seed", "1", "--profiles", "500"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "wrote 500 profiles" in out.stdout
    assert "500/500 profiles (100%)" in out.stderr  # progress on stderr
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "SYNTH_Broad_LINCS_Level4_ZSPCINF_mlr12k_n500x12328.gctx" in names
    assert "SYNTH_Broad_LINCS_inst_info.txt" in names


def test_bad_arguments_get_a_clear_error(tmp_path):
    out = subprocess.run(
        [L1000, "synth", "--out", str(tmp_path), "--profiles", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--profiles must be at least 1" in out.stderr


def test_calibrate_prints_the_table():
    """Every published figure beside the synthetic one, labelled as synthetic."""
    out = subprocess.run(
        [L1000, "calibrate", "--profiles", "3000", "--seeds", "0", "--details"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("SYNTHETIC release")
    for paper in ("0.170", "0.064", "0.265", "0.430", "0.696", "0.517", "0.843", "0.590"):
        assert f"| {paper} |" in out.stdout
    assert "0.785-0.820 (ATC)" in out.stdout and "0.826 (ChEMBL)" in out.stdout
    assert "| seed 0 |" in out.stdout
    assert "| same_perturbagen | all | z-score cosine |" in out.stdout


def test_read_across_without_a_model_says_what_to_materialize(tmp_path):
    query = tmp_path / "q.csv"
    query.write_text("gene,p1\n5720,1.0\n")
    out = subprocess.run(
        [L1000, "read-across", str(query), "--data-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "no trained model: materialize embedding_model first" in out.stderr
    assert str(tmp_path / "models" / "embedding_model") in out.stderr


def test_read_across_bad_arguments(tmp_path):
    out = subprocess.run(
        [L1000, "read-across", str(tmp_path / "q.csv"), "--top", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--top must be at least 1" in out.stderr
    out = subprocess.run(
        [L1000, "read-across", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "level-4-like" in out.stdout


def _data_root_without_weights(root: Path) -> list[str]:
    """A data root with a model card, genes and perturbagen embeddings but no model weights:
    enough to read and check query files, not to embed them."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from l1000_assets.core.embeddings.vectors import embedding_schema, model_version, vector_array

    genes = [str(1000 + i) for i in range(978)]
    card = root / "models" / "embedding_model" / "all" / "card.json"  # the served model
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"gene_order": genes}))
    meta = root / "lake" / "metadata" / "release=synthetic"
    meta.mkdir(parents=True)
    pd.DataFrame({"gene_id": genes, "symbol": genes, "is_landmark": True}).to_parquet(
        meta / "genes.parquet"
    )
    pd.DataFrame({"pert_id": ["a"], "moa": [None], "target": [None]}).to_parquet(
        meta / "perturbagens.parquet"
    )
    fields = [pa.field(n, pa.string()) for n in ("pert_id", "pert_iname", "pert_type", "cell_id")]
    schema = embedding_schema(fields, 4, model_version(card))
    vectors = vector_array(np.eye(4, dtype=np.float32)[:1])
    out = root / "lake" / "embeddings" / "perturbagens.parquet"
    out.parent.mkdir(parents=True)
    pq.write_table(pa.table([["a"], ["A"], ["trt_cp"], [None], vectors], schema=schema), out)
    return genes


def test_read_across_reads_and_refuses_a_file_before_loading_the_model(tmp_path):
    genes = _data_root_without_weights(tmp_path)
    garbage = tmp_path / "garbage.csv"
    garbage.write_bytes(random.Random(0).randbytes(2_000_000))
    huge = tmp_path / "huge.csv"
    values = [f"{(i % 7 - 3) * 1e30:g}" for i in range(978)]
    huge.write_text("gene,p1\n" + "".join(f"{g},{v}\n" for g, v in zip(genes, values)))
    out = subprocess.run(
        [L1000, "read-across", str(garbage), str(huge), "--data-root", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Both refused for what they hold; the model (absent here) was never loaded.
    assert out.returncode == 1, out.stderr
    assert f"error: {garbage}: binary data, not a text table" in out.stderr
    assert f"error: {huge}: 1 profile(s) with values beyond" in out.stderr
    assert "embedding.keras" not in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(
        [L1000, "read-across", str(garbage), "--data-root", str(tmp_path), "--max-bytes", "1000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1
    assert "2,000,000 bytes, more than the 1,000 a query file may have" in out.stderr
