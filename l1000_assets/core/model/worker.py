"""One worker of a model trained on several machines (``MultiWorkerMirroredStrategy``).

TensorFlow's multi-worker training runs the same program on every machine, each with a
``TF_CONFIG`` naming all workers and its own index. ``embedding_model`` is the chief (worker
0): under such a ``TF_CONFIG`` it writes the training specification beside its checkpoints
(:func:`write_spec`) and trains. Every other machine runs::

    export TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]},
                       "task": {"type": "worker", "index": 1}}'
    python -m l1000_assets.core.model.worker \\
        <data root>/models/checkpoints/embedding_model/<split>/worker_spec.json

which waits for the specification (``--wait`` seconds), trains the same model on the same
split (gradients are all-reduced at every step) and writes nothing: only the chief writes
checkpoints and the model. The data root must be on a file system every machine reads.
Started by hand with index 0 too, the module is the chief and saves the model itself.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from l1000_assets.core.atomic import atomic_file

SPEC_FILE = "worker_spec.json"


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to train one split's model."""

    files: list[str]
    split_path: str
    normalization_path: str
    split: str
    split_seed: int | None
    model_config: dict
    train_config: dict
    checkpoint_dir: str
    model_dir: str
    data_version: str
    sample_seed: int


def write_spec(path: Path, spec: WorkerSpec) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(asdict(spec), indent=1))
    return path


def read_spec(path: Path, wait: float = 0.0) -> WorkerSpec:
    """The specification at ``path``, waiting up to ``wait`` seconds for it to appear."""
    deadline = time.monotonic() + wait
    while not path.exists():
        if time.monotonic() > deadline:
            raise FileNotFoundError(f"{path}: no worker specification (is the chief running?)")
        time.sleep(1.0)
    return WorkerSpec(**json.loads(path.read_text()))


def run(spec: WorkerSpec, log=print):
    """Train as this process's worker; the chief saves the model. Returns the
    :class:`~l1000_assets.core.model.split_models.TrainedModel`."""
    import pandas as pd

    from l1000_assets.core.model.devices import cluster
    from l1000_assets.core.model.network import ModelConfig
    from l1000_assets.core.model.normalization import NormalizationStats
    from l1000_assets.core.model.split import split_sets
    from l1000_assets.core.model.split_models import train_on_split
    from l1000_assets.core.model.store import save_model
    from l1000_assets.core.model.training import TrainConfig

    perts = split_sets(pd.read_parquet(spec.split_path))
    trained = train_on_split(
        [Path(f) for f in spec.files],
        perts,
        NormalizationStats.load(Path(spec.normalization_path)),
        ModelConfig(**spec.model_config),
        TrainConfig(**spec.train_config),
        Path(spec.checkpoint_dir),
        split=spec.split,
        split_seed=spec.split_seed,
        data_version=spec.data_version,
        sample_seed=spec.sample_seed,
        log=log,
    )
    if cluster().is_chief:
        from l1000_assets.core.readacross.platforms.landmark_stats import (
            STATS_FILE,
            fit_landmark_stats,
        )

        result = trained.result
        stats = fit_landmark_stats([Path(f) for f in spec.files], perts["train"])
        save_model(
            Path(spec.model_dir),
            result.embedding,
            trained.card,
            result.history,
            training_model=result.training_model,
            extra_files={STATS_FILE: stats.save},
        )
    return trained


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="worker_spec.json written by the chief")
    parser.add_argument("--wait", type=float, default=600.0, help="seconds to wait for it")
    args = parser.parse_args(argv)
    trained = run(read_spec(args.spec, args.wait), log=lambda m: print(m, flush=True))
    heldout = trained.card["heldout"]
    print(
        json.dumps(
            {
                "split": trained.card["split"],
                "steps": trained.result.history[-1]["step"] if trained.result.history else 0,
                "resumed_from_step": trained.result.resumed_from_step,
                "device": trained.result.device,
                "heldout_auc": heldout["embedding"]["auc"] if heldout else None,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
