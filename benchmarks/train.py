"""Benchmark: training throughput and peak memory of the embedding model.

Measured side by side, each configuration in a fresh process (its own peak RSS), on
random landmark data with the real model, head, loss, margin schedule and tf.data input:

* the paper configuration: depth 64, growth 16, 32-d embedding, 36,000 classes;
* the demo configuration (the ``embedding_model`` asset's defaults): depth 16, growth 32,
  32-d, 900 classes.

Throughput is profiles/s over ``--steps`` timed steps after ``--warmup`` steps; the batch is
the asset's default for the device (512 on CPU, 8,192 on a GPU) unless ``--batch`` is given.

``--paper-schedule`` instead runs the paper's schedule through the real training loop
(``core.model.training.train``): the paper configuration (depth 64, growth 16, 32-d,
36,000 classes), 8,000 steps at batch 8,192, mixed precision, the training set resident on
the GPU (``input_pipeline: auto``), checkpoints every 1,000 steps, on ``--profiles``
generated profiles (default 1,567,575, the paper's count). It prints the wall time, the
training throughput, the GPU model (``nvidia-smi``) and its utilization while training: meant
for a GPU machine. ``--steps N`` (and a smaller ``--profiles``) runs the same code path for a
few steps anywhere, e.g. on CPU; ``--input device`` forces the resident input there.

Usage: ``python benchmarks/train.py [--steps 30] [--batch N]``
       ``python benchmarks/train.py --paper-schedule [--steps 8000] [--profiles N]``
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

PAPER_SCHEDULE = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
import numpy as np
from l1000_assets.core.model.devices import gpu_names
from l1000_assets.core.model.network import ModelConfig
from l1000_assets.core.model.normalization import NormalizationStats
from l1000_assets.core.model.training import SplitProfiles, TrainConfig, train

steps, n, n_classes, batch, every, pipeline = sys.argv[1:7]
steps, n, n_classes, batch, every = map(int, (steps, n, n_classes, batch, every))
t0 = time.perf_counter()
rng = np.random.default_rng(0)
labels = rng.integers(0, n_classes, n)
ids = np.array([f"p{i:05d}" for i in range(n_classes)])
values = np.empty((n, 978), np.float32)
for b in range(0, n, 100_000):  # in blocks: no float64 copy of the whole set
    values[b : b + 100_000] = rng.standard_normal((min(100_000, n - b), 978), dtype=np.float32)
profiles = SplitProfiles(values, ids[labels], np.full(n, "trt_cp"))
empty = SplitProfiles(np.zeros((0, 978), np.float32), np.array([]), np.array([]))
stats = NormalizationStats(np.zeros(978), np.ones(978), n)
config = TrainConfig(steps=steps, batch_size=batch, checkpoint_every=every,
                     mixed_precision=True, input_pipeline=pipeline)
prepared = time.perf_counter() - t0
with tempfile.TemporaryDirectory() as ckpt:
    t1 = time.perf_counter()
    result = train([], list(ids), empty, stats, ModelConfig(depth=64, growth=16), config,
                   Path(ckpt), log=lambda m: print(m, file=sys.stderr, flush=True),
                   profiles=profiles)
    wall = time.perf_counter() - t1
rates = [h["profiles_per_second"] for h in result.history]
print(json.dumps({"device": result.device, "gpus": gpu_names(), "seconds": wall,
                  "prepare_seconds": prepared, "steps": result.history[-1]["step"],
                  "batch": result.batch_size, "input": result.extra["input_pipeline"],
                  "profiles_per_second": result.history[-1]["step"] * result.batch_size / wall,
                  "chunk_profiles_per_second": rates, "gpu": result.extra["gpu"],
                  "parameters": result.extra["parameters"],
                  "final_margin": result.history[-1]["margin"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CONFIGS = {
    "paper (64 x 16, 36k classes)": (64, 16, 36_000),
    "demo (16 x 32, 900 classes)": (16, 32, 900),
}


def _child(script: str, *args) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run(depth, growth, classes, batch, warmup, steps) -> dict:
    return _child(CHILD, depth, growth, classes, batch, warmup, steps)


def paper_schedule(args) -> None:
    steps = args.steps if args.steps_given else 8000
    every = min(1000, steps)
    r = _child(PAPER_SCHEDULE, steps, args.profiles, 36_000, args.batch or 8192, every, args.input)
    gpu = r["gpu"] or {}
    utilization = (
        f"GPU utilization mean {gpu['gpu_utilization_mean']:.0f}% (max "
        f"{gpu['gpu_utilization_max']:.0f}%, {gpu['gpu_memory_max_mib']:,.0f} MiB, "
        f"{gpu['samples']} samples)"
        if gpu
        else "GPU utilization: no nvidia-smi"
    )
    print(
        f"paper schedule: {r['steps']:,} steps at batch {r['batch']:,} (depth 64, growth 16, "
        f"36,000 classes, {r['parameters']:,} parameters, mixed precision where a GPU is) on "
        f"{r['device']} ({', '.join(r['gpus']) or 'no GPU listed by nvidia-smi'}), input "
        f"{r['input']}, {args.profiles:,} generated profiles:\n"
        f"  wall time {r['seconds']:.1f} s ({r['seconds'] / 60:.2f} min) of training, after "
        f"{r['prepare_seconds']:.1f} s generating the profiles\n"
        f"  {r['profiles_per_second']:,.0f} profiles/s over the run; per checkpoint chunk "
        + ", ".join(f"{v:,.0f}" for v in r["chunk_profiles_per_second"])
        + f"\n  {utilization}; final margin {r['final_margin']:.3f}; peak RSS "
        f"{r['peak_rss_mb']:,.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=0)
    parser.add_argument("--paper-schedule", action="store_true")
    parser.add_argument("--profiles", type=int, default=1_567_575)
    parser.add_argument("--input", choices=["auto", "host", "device"], default="auto")
    args = parser.parse_args()
    args.steps_given = args.steps is not None
    args.steps = args.steps if args.steps_given else 30
    if args.paper_schedule:
        paper_schedule(args)
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
