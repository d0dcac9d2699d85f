"""Splits, normalization statistics, and training on a small synthetic lake."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from l1000_assets.core.lake.read import landmark_matrix
from l1000_assets.core.model.normalization import (
    NormalizationStats,  # noqa: E402
    normalization_stats,  # noqa: E402
)
from l1000_assets.core.model.split import TEST, TRAIN, VALIDATION, assign_splits
from l1000_assets.core.model.training import TrainConfig, load_split_profiles, train  # noqa: E402


def _splits(files, seed=0):
    perts = np.concatenate(
        [
            pq.read_table(f, columns=["pert_id"]).column("pert_id").to_numpy(zero_copy_only=False)
            for f in files
        ]
    )
    s = assign_splits(perts, seed=seed)
    return {k: sorted(s.loc[s["split"] == k, "pert_id"]) for k in (TRAIN, VALIDATION, TEST)}


def test_split_is_deterministic_by_perturbagen():
    ids = [f"BRD-{i:05d}" for i in range(5000)]
    a = assign_splits(ids, seed=3)
    b = assign_splits(list(reversed(ids)) + ids[:10], seed=3)
    assert a.equals(b)
    frac = a["split"].value_counts(normalize=True)
    assert frac[TEST] == pytest.approx(0.2, abs=0.02)
    assert frac[VALIDATION] == pytest.approx(0.08, abs=0.02)  # 10% of the 80% train
    assert (a.loc[a["split"] == TEST, "fold"] == 0).all()
    c = assign_splits(ids, seed=4)
    assert (a["split"] != c["split"]).mean() > 0.2
    # Adding perturbagens never moves existing ones.
    more = assign_splits(ids + ["NEW-1", "NEW-2"], seed=3).set_index("pert_id")
    assert (more.loc[ids, "split"].to_numpy() == a["split"].to_numpy()).all()


def test_normalization_stats_over_training_profiles_only(small_lake):
    train_perts = set(_splits(small_lake)[TRAIN])
    stats = normalization_stats(small_lake, train_perts)
    x = np.concatenate(
        [
            landmark_matrix(
                t.filter(
                    np.isin(t.column("pert_id").to_numpy(zero_copy_only=False), list(train_perts))
                )
            )
            for t in map(pq.read_table, small_lake)
        ]
    ).astype(np.float64)
    assert stats.n_profiles == len(x)
    np.testing.assert_allclose(stats.mean, x.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(stats.sd, x.std(axis=0, ddof=1), rtol=1e-6)
    assert len(stats.digest) == 64


TINY = dict(depth=4, growth=16, embedding_dim=16)


def _train_args(small_lake, tmp_path, steps, every):
    from l1000_assets.core.model.network import ModelConfig

    s = _splits(small_lake)
    stats = normalization_stats(small_lake, set(s[TRAIN]))
    validation = load_split_profiles(small_lake, set(s[VALIDATION]))
    return dict(
        files=small_lake,
        train_perts=s[TRAIN],
        validation=validation,
        stats=stats,
        model_config=ModelConfig(**TINY, margin_ramp=0.001),
        train_config=TrainConfig(
            steps=steps, batch_size=128, checkpoint_every=every, learning_rate=2e-3
        ),
        checkpoint_dir=tmp_path / "ckpt",
    )


def test_tiny_model_learns(small_lake, tmp_path):
    from l1000_assets.core.evaluation.metrics import (
        RetrievalSummary,
        same_label_quantiles,
    )
    from l1000_assets.core.model.network import embed

    t0 = time.perf_counter()
    result = train(**_train_args(small_lake, tmp_path, steps=300, every=100), log=lambda m: None)
    assert time.perf_counter() - t0 < 60
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert [h["step"] for h in result.history] == [100, 200, 300]
    assert result.history[-1]["margin"] == pytest.approx(0.25)  # 0.001 per step, capped
    test = load_split_profiles(small_lake, set(_splits(small_lake)[TEST]))
    q = same_label_quantiles(embed(result.embedding, test.values), test.pert_ids)
    assert RetrievalSummary.from_quantiles(q, len(test.values))["auc"] > 0.6
    assert (tmp_path / "ckpt" / "state.json").exists()


RESUME_SCRIPT = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from tests.core.model.test_training import _train_args
from l1000_assets.core.model.training import train
files = [Path(p) for p in json.loads(sys.argv[2])]
train(**_train_args(files, Path(sys.argv[3]), steps=400, every=50), log=print)
"""


def test_killed_run_resumes_from_the_last_checkpoint(small_lake, tmp_path):
    repo = str(__import__("tests.conftest", fromlist=["REPO"]).REPO)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RESUME_SCRIPT,
            repo,
            json.dumps([str(f) for f in small_lake]),
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    state = tmp_path / "ckpt" / "state.json"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if state.exists() and json.loads(state.read_text())["step"] >= 100:
                break
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint within 120 s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a crash, not a clean shutdown
        proc.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 100 <= killed_at < 400
    messages = []
    result = train(**_train_args(small_lake, tmp_path, steps=400, every=50), log=messages.append)
    assert result.resumed_from_step == killed_at
    assert any(f"resuming from the checkpoint at step {killed_at:,}" in m for m in messages)
    steps = [h["step"] for h in result.history]
    assert steps == list(range(50, 401, 50))  # history carried over, no step trained twice
    # The schedule continues from the restored optimizer step, not from zero.
    assert result.history[-1]["margin"] == pytest.approx(0.25)


def test_changed_configuration_starts_afresh(small_lake, tmp_path):
    train(**_train_args(small_lake, tmp_path, steps=50, every=50), log=lambda m: None)
    messages = []
    args = _train_args(small_lake, tmp_path, steps=100, every=50)
    result = train(**args, log=messages.append)
    assert result.resumed_from_step == 0
    assert any("starting afresh" in m for m in messages)


def test_stats_round_trip(tmp_path):
    stats = NormalizationStats(np.arange(978.0), np.ones(978), 10)
    stats.save(tmp_path / "s.json")
    again = NormalizationStats.load(tmp_path / "s.json")
    assert again.digest == stats.digest and again.n_profiles == 10


def test_training_set_over_the_memory_budget_is_streamed(small_lake, tmp_path):
    args = _train_args(small_lake, tmp_path, steps=40, every=20)
    args["train_config"] = TrainConfig(
        steps=40, batch_size=64, checkpoint_every=20, memory_budget_mb=1, shuffle_buffer=500
    )
    messages = []
    result = train(**args, log=messages.append)
    assert result.extra["in_memory"] is False
    assert any("streamed from the lake" in m for m in messages)
    assert [h["step"] for h in result.history] == [20, 40]
    assert np.isfinite(result.history[-1]["loss"])


def test_training_set_resident_on_the_device_learns_and_resumes(small_lake, tmp_path):
    """The GPU input path (profiles copied onto the device once, batches gathered there from
    row indices), run on the CPU device: it learns like the host path and resumes."""
    from l1000_assets.core.evaluation.metrics import RetrievalSummary, same_label_quantiles
    from l1000_assets.core.model.network import embed

    args = _train_args(small_lake, tmp_path, steps=300, every=100)
    args["train_config"] = TrainConfig(
        steps=300, batch_size=128, checkpoint_every=100, learning_rate=2e-3, input_pipeline="device"
    )
    messages = []
    result = train(**args, log=messages.append)
    assert result.extra["input_pipeline"] == "device"
    assert any("resident on the device" in m for m in messages)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    test = load_split_profiles(small_lake, set(_splits(small_lake)[TEST]))
    q = same_label_quantiles(embed(result.embedding, test.values), test.pert_ids)
    assert RetrievalSummary.from_quantiles(q, len(test.values))["auc"] > 0.6
    again = train(**args, log=lambda m: None)
    assert again.resumed_from_step == 300
    with pytest.raises(ValueError, match="input_pipeline"):
        TrainConfig(input_pipeline="gpu")
    # auto: resident only on one GPU, one worker, within the device budget.
    auto = TrainConfig(device_memory_budget_mb=1)
    assert auto.resolved_input(1, 1, 2**20) == "device"
    assert auto.resolved_input(1, 1, 2**20 + 1) == "host"
    assert auto.resolved_input(0, 1, 10) == "host" and auto.resolved_input(2, 1, 10) == "host"
    assert auto.resolved_input(1, 2, 10) == "host"
