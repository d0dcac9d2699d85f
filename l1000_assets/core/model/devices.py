"""Where training runs: the distribution strategy, the device, and GPU utilization.

* :func:`training_strategy` picks TensorFlow's strategy: ``MultiWorkerMirroredStrategy``
  when ``TF_CONFIG`` names more than one worker (one process per machine, each with the same
  program; gradients are all-reduced over the workers), ``MirroredStrategy`` with several
  visible GPUs, else the default (one device). It is created once per process, as TensorFlow
  requires of a multi-worker strategy.
* :func:`cluster` reads ``TF_CONFIG``: the number of workers and this process's index; the
  chief (worker 0) alone writes checkpoints and the model.
* :class:`GpuMonitor` samples ``nvidia-smi`` in a background thread while a model trains, so
  the run can report how busy the GPU was (nothing when ``nvidia-smi`` is absent).

TensorFlow is imported lazily.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass

TF_CONFIG = "TF_CONFIG"


@dataclass(frozen=True)
class Cluster:
    """The multi-worker cluster this process belongs to (1 worker without ``TF_CONFIG``)."""

    n_workers: int
    index: int

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def cluster() -> Cluster:
    """``TF_CONFIG``'s worker count and this task's index.

    Raises
    ------
    ValueError
        When ``TF_CONFIG`` is not JSON of the form
        ``{"cluster": {"worker": [...]}, "task": {"type": "worker", "index": i}}``.
    """
    raw = os.environ.get(TF_CONFIG, "").strip()
    if not raw:
        return Cluster(1, 0)
    try:
        spec = json.loads(raw)
        workers = list(spec["cluster"]["worker"])
        task = spec["task"]
        index = int(task["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{TF_CONFIG} must be JSON like "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            f'"task": {{"type": "worker", "index": 0}}}}; got {raw[:200]!r} ({exc})'
        ) from exc
    if task.get("type", "worker") != "worker" or not 0 <= index < len(workers):
        raise ValueError(f"{TF_CONFIG}: task {task} is not one of the {len(workers)} workers")
    return Cluster(len(workers), index)


_STRATEGY = None


@dataclass(frozen=True)
class Devices:
    strategy: object  # tf.distribute.Strategy
    n_gpus: int  # GPUs of this process
    description: str  # e.g. "CPU", "1 x NVIDIA H200", "2 workers x CPU"
    cluster: Cluster


def training_strategy() -> Devices:
    """The strategy for this process (created once) and a description of its devices."""
    global _STRATEGY
    import tensorflow as tf

    where = cluster()
    if _STRATEGY is None:
        if where.n_workers > 1:
            _STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            _STRATEGY = tf.distribute.MirroredStrategy()
        else:
            _STRATEGY = tf.distribute.get_strategy()
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
        device = f"{len(gpus)} x {name}"
    else:
        device = "CPU"
    if where.n_workers > 1:
        device = f"{where.n_workers} workers x {device}"
    return Devices(_STRATEGY, len(gpus), device, where)


def fit_across_workers(model, strategy, dataset) -> None:
    """Make ``model.fit`` work under ``MultiWorkerMirroredStrategy`` in Keras 3.15 (TF
    backend), which fails there twice: its symbolic build reduces the first input batch
    across workers, and every step reduces its scalar logs along axis 0. The model is built
    here from a local batch instead (shapes are all it needs), and the step's logs are given
    one axis, so the workers' mean loss and accuracy come back as scalars. Gradients are
    all-reduced by the strategy as before; nothing else changes."""
    import tensorflow as tf

    with strategy.scope():
        model._symbolic_build(data_batch=next(iter(dataset)))
    model._maybe_symbolic_build = lambda *args, **kwargs: None
    step = model.train_step
    model.train_step = lambda data: {k: tf.reshape(v, [1]) for k, v in step(data).items()}


def gpu_names() -> list[str]:
    """The GPUs ``nvidia-smi`` lists (empty when it is absent or fails)."""
    out = _nvidia_smi("name")
    return [row[0] for row in out] if out else []


def _nvidia_smi(fields: str) -> list[list[str]] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return None
    return [[c.strip() for c in line.split(",")] for line in out.stdout.splitlines() if line]


class GpuMonitor:
    """GPU utilization (%) and memory used (MiB), sampled every ``interval`` seconds by
    ``nvidia-smi`` while the ``with`` block runs; :meth:`summary` gives mean and peak.

    Without ``nvidia-smi`` it samples nothing and :meth:`summary` is ``None``.
    """

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self) -> GpuMonitor:
        if shutil.which("nvidia-smi") is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rows = _nvidia_smi("utilization.gpu,memory.used")
            if rows:
                try:
                    self.samples.append((float(rows[0][0]), float(rows[0][1])))
                except (ValueError, IndexError):
                    pass

    def summary(self) -> dict | None:
        """``{"gpu_utilization_mean", "gpu_utilization_max", "gpu_memory_max_mib",
        "samples"}`` over the samples (first GPU); ``None`` without samples."""
        if not self.samples:
            return None
        util = [u for u, _ in self.samples]
        return {
            "gpu_utilization_mean": round(sum(util) / len(util), 1),
            "gpu_utilization_max": max(util),
            "gpu_memory_max_mib": max(m for _, m in self.samples),
            "samples": len(self.samples),
        }
