"""One model trained by two worker processes on 127.0.0.1 (MultiWorkerMirroredStrategy,
TF_CONFIG), against a single-worker run of the same configuration; the pair is killed
after its first checkpoint and resumes from it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict

import pytest

from l1000_assets.core.model.network import ModelConfig
from l1000_assets.core.model.normalization import normalization_stats
from l1000_assets.core.model.split import TRAIN, assign_splits, split_sets
from l1000_assets.core.model.training import TrainConfig
from l1000_assets.core.model.worker import WorkerSpec, run, write_spec

AUC_TOLERANCE = 0.05
"""Held-out AUC of two workers within this of one worker's (the same global batch and
schedule; the batches differ, and on this tiny release seeds move the AUC by ~0.02)."""
RUN_TIMEOUT_S = 240
TINY = ModelConfig(depth=4, growth=16, embedding_dim=16, margin_ramp=0.001)
SCHEDULE = TrainConfig(steps=300, batch_size=128, checkpoint_every=100, learning_rate=2e-3)


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _spec(small_lake, root, name):
    import pandas as pd
    import pyarrow.parquet as pq

    ids = pd.concat([pq.read_table(f, columns=["pert_id"]).to_pandas() for f in small_lake])
    split = assign_splits(ids["pert_id"], seed=0)
    split_path = root / "split.parquet"
    split.to_parquet(split_path, index=False)
    stats_path = root / "stats.json"
    normalization_stats(small_lake, split_sets(split)[TRAIN]).save(stats_path)
    return WorkerSpec(
        files=[str(f) for f in small_lake],
        split_path=str(split_path),
        normalization_path=str(stats_path),
        split="split_0",
        split_seed=0,
        model_config=TINY.to_dict(),
        train_config=asdict(SCHEDULE),
        checkpoint_dir=str(root / name / "ckpt"),
        model_dir=str(root / name / "model"),
        data_version="v1",
        sample_seed=0,
    )


def _start_workers(spec_path, ports, logs):
    procs = []
    for index in range(len(ports)):
        tf_config = {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(logs[index], "ab") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "l1000_assets.core.model.worker", str(spec_path)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return procs


def _kill(procs):
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def _last_json(path):
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1])


def test_two_workers_match_one_and_resume_after_a_crash(small_lake, tmp_path):
    single = run(_spec(small_lake, tmp_path, "one"), log=lambda m: None)
    one_auc = single.card["heldout"]["embedding"]["auc"]

    spec = _spec(small_lake, tmp_path, "two")
    spec_path = write_spec(tmp_path / "two" / "worker_spec.json", spec)
    state = tmp_path / "two" / "ckpt" / "state.json"
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    ports = _free_ports(2)
    procs = _start_workers(spec_path, ports, logs)
    try:  # a crash after the first checkpoint: both workers killed
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not (state.exists() and json.loads(state.read_text())["step"] >= 100):
            assert all(p.poll() is None for p in procs), logs[0].read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint from two workers in time"
            time.sleep(0.2)
    finally:
        _kill(procs)
    killed_at = json.loads(state.read_text())["step"]
    assert 100 <= killed_at < 300

    procs = _start_workers(spec_path, _free_ports(2), logs)
    try:
        for p in procs:
            p.wait(timeout=RUN_TIMEOUT_S)
    finally:
        _kill(procs)
    assert [p.returncode for p in procs] == [0, 0], logs[0].read_text()[-3000:]
    chief, other = (_last_json(log) for log in logs)
    assert chief["device"] == "2 workers x CPU"
    assert chief["resumed_from_step"] == other["resumed_from_step"] == killed_at
    assert chief["steps"] == other["steps"] == 300
    # Synchronous training: both workers end with the same weights, so the same figures.
    assert chief["heldout_auc"] == pytest.approx(other["heldout_auc"], abs=1e-6)
    print(f"held-out AUC: one worker {one_auc:.4f}, two workers {chief['heldout_auc']:.4f}")
    assert chief["heldout_auc"] == pytest.approx(one_auc, abs=AUC_TOLERANCE)
    assert chief["heldout_auc"] > 0.6
    card = json.loads((tmp_path / "two" / "model" / "card.json").read_text())
    assert (
        card["split"] == "split_0"
        and card["n_train_perturbagens"] == single.card["n_train_perturbagens"]
    )
    history = [h["step"] for h in json.loads(state.read_text())["history"]]
    assert history == [100, 200, 300]  # no chunk trained twice
