"""TF_CONFIG parsing and the GPU monitor (which samples nothing without nvidia-smi)."""

import json

import pytest

from l1000_assets.core.model.devices import GpuMonitor, cluster, gpu_names


def test_cluster_from_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cluster().n_workers == 1 and cluster().is_chief
    spec = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker"}}
    monkeypatch.setenv("TF_CONFIG", json.dumps({**spec, "task": {"type": "worker", "index": 1}}))
    assert (cluster().n_workers, cluster().index, cluster().is_chief) == (2, 1, False)
    monkeypatch.setenv("TF_CONFIG", json.dumps({**spec, "task": {"type": "worker", "index": 2}}))
    with pytest.raises(ValueError, match="not one of the 2 workers"):
        cluster()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG must be JSON"):
        cluster()


def test_gpu_monitor_without_nvidia_smi(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with GpuMonitor(interval=0.01) as gpu:
        pass
    assert gpu.summary() is None and gpu_names() == []


def test_gpu_monitor_summarizes_samples():
    gpu = GpuMonitor()
    gpu.samples = [(50.0, 1000.0), (100.0, 3000.0)]
    assert gpu.summary() == {
        "gpu_utilization_mean": 75.0,
        "gpu_utilization_max": 100.0,
        "gpu_memory_max_mib": 3000.0,
        "samples": 2,
    }
