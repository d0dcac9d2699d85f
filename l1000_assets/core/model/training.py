"""Training the embedding on the landmark lake: data, normalization, loop, checkpoints.

* :func:`normalization_stats` streams the lake once (float64 sums) for the per-gene mean
  and SD of the training profiles.
* :func:`load_split_profiles` reads the profiles of chosen perturbagens into memory when
  they fit a memory budget; :func:`streaming_dataset` otherwise streams the lake files into
  ``tf.data`` with a shuffle buffer.
* :func:`train` runs the loop in chunks of ``checkpoint_every`` steps. After each chunk it
  scores same-perturbagen retrieval on the validation perturbagens (training-split
  perturbagens the model never trains on), keeps the best weights, and writes a checkpoint
  (weights, optimizer state, history) atomically. Started again with the same
  configuration and data, it resumes from the last checkpoint.

TensorFlow is imported lazily inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from numpy.typing import NDArray

from l1000_assets.core.atomic import atomic_dir
from l1000_assets.core.evaluation.metrics import same_label_quantiles, summarize_quantiles
from l1000_assets.core.lake.read import landmark_matrix
from l1000_assets.core.lake.schema import N_LANDMARKS, VALUES_COLUMN
from l1000_assets.core.model.normalization import NormalizationStats, perturbagen_batches
from l1000_assets.core.progress import Log


@dataclass
class SplitProfiles:
    values: NDArray[np.float32]  # (n, 978) raw z-scores
    pert_ids: NDArray[np.str_]  # (n,)
    pert_types: NDArray[np.str_]  # (n,)


def count_rows(files: Sequence[Path], pert_ids: set[str] | None = None) -> int:
    """Rows in the lake files (only those of ``pert_ids`` when given: reads one column)."""
    if pert_ids is None:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in files)
    return sum(b.num_rows for b in perturbagen_batches(files, pert_ids, ["pert_id"]))


def load_split_profiles(
    files: Sequence[Path], pert_ids: set[str], max_profiles: int | None = None, seed: int = 0
) -> SplitProfiles:
    """Profiles of ``pert_ids`` in memory (optionally a seeded subsample of ``max_profiles``)."""
    values, perts, types = [], [], []
    for batch in perturbagen_batches(files, pert_ids, ["pert_id", "pert_type", VALUES_COLUMN]):
        values.append(landmark_matrix(batch))
        perts.append(batch.column("pert_id").to_numpy(zero_copy_only=False))
        types.append(batch.column("pert_type").to_numpy(zero_copy_only=False))
    if not values:
        return SplitProfiles(np.zeros((0, N_LANDMARKS), np.float32), np.array([]), np.array([]))
    out = SplitProfiles(
        np.concatenate(values), np.concatenate(perts).astype(str), np.concatenate(types).astype(str)
    )
    if max_profiles is not None and len(out.values) > max_profiles:
        keep = np.sort(
            np.random.default_rng(seed).choice(len(out.values), max_profiles, replace=False)
        )
        out = SplitProfiles(out.values[keep], out.pert_ids[keep], out.pert_types[keep])
    return out


def _as_dataset(generate, batch_size: int | None):
    import tensorflow as tf

    ds = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec((batch_size, N_LANDMARKS), tf.float32),
            tf.TensorSpec((batch_size,), tf.int32),
        ),
    )
    return ds


def streaming_dataset(
    files: Sequence[Path], label_of: dict[str, int], batch_size: int, shuffle_buffer: int, seed: int
):
    """An endless ``tf.data`` stream of ``((profiles, labels), labels)`` batches from the
    lake, for training sets larger than the memory budget.

    Every lake file (one per cell line and release) is open at once and the next small
    record batch is drawn from a random file, weighted by its rows left, so batches mix
    cell lines as a full shuffle would; a shuffle buffer then mixes the records.
    Memory: one 1,024-row batch per file plus the shuffle buffer.
    """
    import tensorflow as tf

    wanted = set(label_of)
    rng = np.random.default_rng(seed)
    rows = np.array([count_rows([f]) for f in files], dtype=np.float64)

    def generate():
        while True:
            readers = [
                iter(perturbagen_batches([f], wanted, ["pert_id", VALUES_COLUMN], 1024))
                for f in files
            ]
            left = rows.copy()
            while left.sum() > 0:
                i = rng.choice(len(files), p=left / left.sum())
                batch = next(readers[i], None)
                if batch is None:
                    left[i] = 0
                    continue
                left[i] = max(left[i] - batch.num_rows, 1)
                ids = batch.column("pert_id").to_numpy(zero_copy_only=False)
                yield landmark_matrix(batch), np.array([label_of[p] for p in ids], np.int32)

    ds = _as_dataset(generate, None).unbatch().shuffle(shuffle_buffer, seed=seed)
    ds = ds.batch(batch_size, drop_remainder=True)
    return ds.map(lambda x, y: ((x, y), y)).prefetch(tf.data.AUTOTUNE)


def memory_dataset(values: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """An endless stream of shuffled batches gathered from arrays in memory.

    Shuffles row indices, not rows: the only copy of the data is ``values`` itself (plus
    the batches in flight), so the memory budget means what it says.
    """

    rng = np.random.default_rng(seed)
    labels = labels.astype(np.int32)

    def generate():
        while True:
            order = rng.permutation(len(values))
            for b0 in range(0, len(order) - batch_size + 1, batch_size):
                idx = np.sort(order[b0 : b0 + batch_size])
                yield values[idx], labels[idx]

    ds = _as_dataset(generate, batch_size)
    return ds.map(lambda x, y: ((x, y), y)).prefetch(4)


def row_dataset(labels: np.ndarray, batch_size: int, seed: int):
    """An endless stream of shuffled ``(row indices, labels)`` batches, for a training set
    resident on the device (:func:`~l1000_assets.core.model.network.build_resident_training_model`
    gathers the profiles there): only indices cross from the host, so the input pipeline
    costs a few bytes per profile, whatever the profile size."""
    import tensorflow as tf

    n = len(labels)
    table = tf.constant(labels.astype(np.int32))
    ds = tf.data.Dataset.range(n).shuffle(n, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=True).map(
        lambda rows: (tf.cast(rows, tf.int32), tf.gather(table, rows)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------
INPUT_PIPELINES = ("auto", "host", "device")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation schedule. The paper does not state its optimizer: Adam with a
    cosine-decayed learning rate (5% warm-up) is used here.

    ``input_pipeline``: ``host`` draws shuffled batches from the profiles in host memory
    (:func:`memory_dataset`); ``device`` copies the training profiles onto the device once
    and draws only row indices (:func:`row_dataset`), so a GPU never waits for its input;
    ``auto`` picks ``device`` on one GPU when they fit ``device_memory_budget_mb``, else
    ``host``. Training sets over ``memory_budget_mb`` are streamed from the lake either way.
    """

    steps: int = 8_000  # rounded up to whole checkpoint chunks
    batch_size: int = 0  # 0: 8,192 on a GPU, 512 on CPU
    learning_rate: float = 1e-3
    warmup_fraction: float = 0.05
    checkpoint_every: int = 250
    validation_profiles: int = 4_000  # validation retrieval sample per evaluation
    memory_budget_mb: int = 4_096  # above this the lake is streamed, not loaded
    shuffle_buffer: int = 200_000
    mixed_precision: bool = False  # mixed_float16, on a GPU only
    input_pipeline: str = "auto"
    device_memory_budget_mb: int = 16_384  # training profiles resident on one GPU up to this
    seed: int = 0

    def __post_init__(self) -> None:
        if self.input_pipeline not in INPUT_PIPELINES:
            raise ValueError(
                f"input_pipeline must be one of {', '.join(INPUT_PIPELINES)}, "
                f"not {self.input_pipeline!r}"
            )

    def resolved_batch_size(self, gpus: int) -> int:
        if self.batch_size:
            return self.batch_size
        return 8_192 if gpus else 512

    def resolved_input(self, n_gpus: int, n_workers: int, nbytes: int) -> str:
        """``host`` or ``device`` for a training set of ``nbytes`` held in memory."""
        if self.input_pipeline != "auto":
            return self.input_pipeline
        fits = nbytes <= self.device_memory_budget_mb * 2**20
        return "device" if n_gpus == 1 and n_workers == 1 and fits else "host"


@dataclass
class TrainResult:
    embedding: object  # keras.Model, best validation weights (last without validation)
    training_model: object  # keras.Model: embedding + margin head, last weights
    history: list[dict]
    best_step: int
    best_validation_auc: float  # NaN without validation perturbagens
    resumed_from_step: int
    device: str
    batch_size: int
    seconds: float
    n_train_profiles: int
    n_classes: int
    extra: dict = field(default_factory=dict)


def _fingerprint(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _lr_schedule(cfg: TrainConfig):
    import keras

    warmup = max(1, int(cfg.steps * cfg.warmup_fraction))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=cfg.learning_rate / 10,
        decay_steps=max(1, cfg.steps - warmup),
        warmup_target=cfg.learning_rate,
        warmup_steps=warmup,
        alpha=0.01,
    )


def _save_checkpoint(
    ckpt_dir: Path, training_model, optimizer, state: dict, best_weights: list[np.ndarray] | None
) -> None:
    with atomic_dir(ckpt_dir) as tmp:
        training_model.save_weights(tmp / "model.weights.h5")
        np.savez(tmp / "optimizer.npz", *[v.numpy() for v in optimizer.variables])
        if best_weights is not None:
            np.savez(tmp / "best_embedding.npz", *best_weights)
        (tmp / "state.json").write_text(json.dumps(state, indent=1))


def _validation_auc(embedding, validation: SplitProfiles) -> float:
    from l1000_assets.core.model.network import embed

    if len(np.unique(validation.pert_ids)) < 2:
        return float("nan")
    q = same_label_quantiles(embed(embedding, validation.values), validation.pert_ids)
    return summarize_quantiles(q)["auc"]


def train(
    files: Sequence[Path],
    train_perts: Sequence[str],
    validation: SplitProfiles,
    stats: NormalizationStats,
    model_config,
    train_config: TrainConfig,
    checkpoint_dir: Path,
    *,
    log: Log = print,
    data_fingerprint: str = "",
    profiles: SplitProfiles | None = None,
) -> TrainResult:
    """Train the embedding; resume from ``checkpoint_dir`` when it holds a compatible run.

    ``profiles``: the training profiles already in memory (``files`` are then not read for
    training; ``benchmarks/train.py`` passes generated ones).

    With fewer than two validation perturbagens nothing is selected: the last weights are
    kept (the ``all`` split, trained on every perturbagen). Under ``TF_CONFIG`` with several
    workers every worker runs this same call on its own machine
    (:func:`~l1000_assets.core.model.devices.training_strategy`); only the chief writes
    ``checkpoint_dir``, which must then be on a file system every worker reads.
    """
    import keras

    from l1000_assets.core.model.devices import training_strategy

    devices = training_strategy()
    mixed = bool(train_config.mixed_precision and devices.n_gpus)
    try:
        if mixed:
            keras.mixed_precision.set_global_policy("mixed_float16")
        return _train(
            files,
            train_perts,
            validation,
            stats,
            model_config,
            train_config,
            checkpoint_dir,
            devices=devices,
            log=log,
            data_fingerprint=data_fingerprint,
            profiles=profiles,
        )
    finally:
        if mixed:  # the policy is global: leave the process as it was
            keras.mixed_precision.set_global_policy("float32")


def _train(
    files,
    train_perts,
    validation,
    stats,
    model_config,
    train_config,
    checkpoint_dir,
    *,
    devices,
    log,
    data_fingerprint,
    profiles,
) -> TrainResult:
    import keras
    import tensorflow as tf

    from l1000_assets.core.model.devices import GpuMonitor, fit_across_workers
    from l1000_assets.core.model.network import (
        MarginSchedule,
        build_embedding_model,
        build_resident_training_model,
        build_training_model,
        margin_at,
    )

    t0 = time.perf_counter()
    keras.utils.set_random_seed(train_config.seed)
    strategy, where = devices.strategy, devices.cluster
    batch = train_config.resolved_batch_size(devices.n_gpus)
    classes = sorted(set(train_perts))
    label_of = {p: i for i, p in enumerate(classes)}
    n_train = len(profiles.values) if profiles is not None else count_rows(files, set(classes))
    nbytes = n_train * N_LANDMARKS * 4
    in_memory = profiles is not None or nbytes <= train_config.memory_budget_mb * 2**20
    pipeline = (
        train_config.resolved_input(devices.n_gpus, where.n_workers, nbytes)
        if in_memory
        else "stream"
    )
    if in_memory:
        data = profiles if profiles is not None else load_split_profiles(files, set(classes))
        labels = np.array([label_of[p] for p in data.pert_ids], np.int32)
        values = data.values
        del data
    selects = len(np.unique(validation.pert_ids)) >= 2
    where_data = {
        "host": "in memory",
        "device": "resident on the device",
        "stream": "streamed from the lake",
    }[pipeline]
    log(
        f"training on {devices.description}: {n_train:,} profiles of {len(classes):,} "
        f"perturbagens, batch {batch}, {where_data}"
        + ("" if selects else "; no validation perturbagens: the last checkpoint is kept")
    )

    with strategy.scope():
        embedding = build_embedding_model(model_config, stats.mean, stats.sd)
        training_model, head = build_training_model(embedding, len(classes), model_config)
        fit_model = training_model
        if pipeline == "device":
            with tf.device("/GPU:0" if devices.n_gpus else "/CPU:0"):
                table = tf.constant(values)
                label_table = tf.constant(labels)
            fit_model = build_resident_training_model(embedding, head, table, label_table)
        fit_model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=_lr_schedule(train_config)),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
        # Under mixed precision compile() wraps Adam in a LossScaleOptimizer: checkpoint
        # the wrapper's variables (loss scale included), not the inner Adam's only.
        optimizer = fit_model.optimizer
        optimizer.build(fit_model.trainable_variables)

    fingerprint = _fingerprint(
        {
            "model": model_config.to_dict(),
            "train": asdict(train_config),
            "classes": _fingerprint({"c": classes}),
            "data": data_fingerprint,
            "stats": stats.digest,
            "workers": where.n_workers,
        }
    )
    state = {
        "fingerprint": fingerprint,
        "step": 0,
        "chunks": 0,
        "history": [],
        "best_step": 0,
        "best_validation_auc": -1.0,
    }
    best_weights = None
    state_file = checkpoint_dir / "state.json"
    if state_file.exists():
        saved = json.loads(state_file.read_text())
        if saved.get("fingerprint") == fingerprint:
            training_model.load_weights(checkpoint_dir / "model.weights.h5")
            opt = np.load(checkpoint_dir / "optimizer.npz")
            for var, key in zip(optimizer.variables, opt.files):
                var.assign(opt[key])
            if (checkpoint_dir / "best_embedding.npz").exists():
                best = np.load(checkpoint_dir / "best_embedding.npz")
                best_weights = [best[k] for k in best.files]
            state = saved
            log(f"resuming from the checkpoint at step {int(saved['step']):,}")
        else:
            log("checkpoint is from another configuration or data: starting afresh")
    resumed_from = int(state["step"])

    # Training runs in chunks of `checkpoint_every` steps (Keras epochs). Chunks, not the
    # optimizer's step count, say where to resume: a loss-scale optimizer skips steps.
    chunk = max(1, train_config.checkpoint_every)
    n_chunks = math.ceil(train_config.steps / chunk)
    done_chunks = int(state["chunks"])
    # A resumed run draws fresh batches; each worker of a cluster draws its own.
    shuffle_seed = train_config.seed + done_chunks + 1_000_003 * where.index
    if pipeline == "device":
        dataset = row_dataset(labels, batch, shuffle_seed)
    elif pipeline == "host":
        dataset = memory_dataset(values, labels, batch, shuffle_seed)
    else:
        dataset = streaming_dataset(
            files, label_of, batch, train_config.shuffle_buffer, shuffle_seed
        )
    if where.n_workers > 1:
        # Every worker reads its own seeded stream (no sharding of one stream); each step's
        # batch of `batch` profiles is split across the workers.
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        dataset = dataset.with_options(options)
        fit_across_workers(fit_model, strategy, dataset)

    class _Chunk(keras.callbacks.Callback):
        """After every chunk: validation retrieval, best weights, checkpoint, progress."""

        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            nonlocal best_weights
            step = int(optimizer.iterations.numpy())
            seconds = time.perf_counter() - self.t
            auc = _validation_auc(embedding, validation)
            if not selects:
                state["best_step"] = step
            elif auc > state["best_validation_auc"]:
                state["best_validation_auc"] = float(auc)
                state["best_step"] = step
                best_weights = [w.copy() for w in embedding.get_weights()]
            row = {
                "step": step,
                "loss": float(logs["loss"]),
                "accuracy": float(logs["accuracy"]),
                "margin": float(head.margin.numpy()),
                "scale": float(head.scale.numpy()),
                "validation_auc": float(auc),
                "profiles_per_second": chunk * batch / seconds,
                "learning_rate": float(optimizer.learning_rate.numpy()),
            }
            state["history"].append(row)
            state["step"] = step
            state["chunks"] = epoch + 1
            if where.is_chief:
                _save_checkpoint(checkpoint_dir, training_model, optimizer, state, best_weights)
            log(
                f"step {step:,}/{n_chunks * chunk:,}: loss {row['loss']:.3f}, "
                f"accuracy {row['accuracy']:.3f}, margin {row['margin']:.3f} "
                f"(schedule {margin_at(step, model_config):.3f}), scale {row['scale']:.1f}, "
                f"validation AUC {auc:.3f}, {row['profiles_per_second']:,.0f} profiles/s"
            )

    gpu = GpuMonitor()
    if done_chunks < n_chunks:
        with gpu:
            fit_model.fit(
                dataset,
                steps_per_epoch=chunk,
                epochs=n_chunks,
                initial_epoch=done_chunks,
                verbose=0,
                shuffle=False,
                callbacks=[MarginSchedule(head, model_config), _Chunk()],
            )
    if best_weights is not None:
        embedding.set_weights(best_weights)
    return TrainResult(
        embedding=embedding,
        training_model=training_model,
        history=state["history"],
        best_step=int(state["best_step"]),
        best_validation_auc=float(state["best_validation_auc"]) if selects else math.nan,
        resumed_from_step=resumed_from,
        device=devices.description,
        batch_size=batch,
        seconds=time.perf_counter() - t0,
        n_train_profiles=n_train,
        n_classes=len(classes),
        extra={
            "in_memory": in_memory,
            "input_pipeline": pipeline,
            "workers": where.n_workers,
            "parameters": int(sum(np.prod(w.shape) for w in embedding.trainable_weights)),
            "gpu": gpu.summary(),
        },
    )
