"""The ``l1000`` command line."""

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
    out = subprocess.run(
        [L1000, "calibrate", "--profiles", "3000"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "| all | z-score cosine |" in out.stdout
    assert "0.696" in out.stdout


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
