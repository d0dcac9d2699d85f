"""Benchmark: training throughput and peak memory of the embedding model.

Measured side by side, each configuration in a fresh process (its own peak RSS), on
random landmark data with the real model, head, loss, margin schedule and tf.data input:

* the paper configuration: depth 64, growth 16, 32-d embedding, 36,000 classes;
* the demo configuration (the ``embedding_model`` asset's defaults): depth 16, growth 32,
  32-d, 900 classes.

Throughput is profiles/s over ``--steps`` timed steps after ``--warmup`` steps; the batch is
the asset's default for the device (512 on CPU, 8,192 on a GPU) unless ``--batch`` is given.

``--paper-schedule`` instead runs the paper's full schedule (8,000 steps at batch 8,192) of
the paper configuration and prints its wall time and the device: meant for a GPU machine.

Usage: ``python benchmarks/train.py [--steps 30] [--batch N] [--paper-schedule]``
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
import keras, tensorflow as tf
from l1000_assets.core.model.network import (ModelConfig, MarginSchedule, build_embedding_model,
                                     build_training_model, count_parameters)
from l1000_assets.core.model.training import TrainConfig, memory_dataset

depth, growth, n_classes, batch, warmup, steps = map(int, sys.argv[1:7])
gpus = tf.config.list_physical_devices("GPU")
batch = batch or TrainConfig().resolved_batch_size(len(gpus))
device = tf.config.experimental.get_device_details(gpus[0]).get("device_name") if gpus else "CPU"
cfg = ModelConfig(depth=depth, growth=growth)
rng = np.random.default_rng(0)
n = max(4 * batch, 50_000)
x = rng.standard_normal((n, 978), dtype=np.float32)
y = rng.integers(0, n_classes, n).astype(np.int32)
emb = build_embedding_model(cfg, np.zeros(978), np.ones(978))
model, head = build_training_model(emb, n_classes, cfg)
model.compile(optimizer=keras.optimizers.Adam(1e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
ds = memory_dataset(x, y, batch, 0)
callbacks = [MarginSchedule(head, cfg)]
model.fit(ds, steps_per_epoch=warmup, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
t0 = time.perf_counter()
model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
dt = time.perf_counter() - t0
print(json.dumps({"device": device, "batch": batch, "seconds": dt,
                  "profiles_per_second": steps * batch / dt,
                  "parameters": count_parameters(model),
                  "margin": float(head.margin.numpy()),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CONFIGS = {
    "paper (64 x 16, 36k classes)": (64, 16, 36_000),
    "demo (16 x 32, 900 classes)": (16, 32, 900),
}


def _run(depth, growth, classes, batch, warmup, steps) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, (depth, growth, classes, batch, warmup, steps))],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--paper-schedule", action="store_true")
    args = parser.parse_args()
    if args.paper_schedule:
        r = _run(64, 16, 36_000, 8192, 1, 8000)
        print(
            f"paper schedule: 8,000 steps at batch 8,192 on {r['device']}: "
            f"{r['seconds'] / 60:.1f} min ({r['profiles_per_second']:,.0f} profiles/s, "
            f"final margin {r['margin']:.3f}, peak RSS {r['peak_rss_mb']:,.0f} MB)"
        )
        return
    print(
        f"{'configuration':<30} {'device':<8} {'batch':>6} {'params':>10} "
        f"{'profiles/s':>11} {'peak RSS MB':>12}"
    )
    for name, (depth, growth, classes) in CONFIGS.items():
        r = _run(depth, growth, classes, args.batch, args.warmup, args.steps)
        print(
            f"{name:<30} {r['device']:<8} {r['batch']:>6} {r['parameters']:>10,} "
            f"{r['profiles_per_second']:>11,.0f} {r['peak_rss_mb']:>12,.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
