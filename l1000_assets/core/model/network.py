"""The deep metric embedding of Donner et al. (Mol. Pharmaceutics 2018), in Keras 3.

* :func:`build_embedding_model`: standardize (training-set mean/SD, stored in the model),
  Gaussian input noise (training only), a DenseNet-style fully connected stack (each layer
  sees the concatenation of the input and every earlier layer's output), SELU with
  LeCun-normal init, a linear projection to ``embedding_dim`` and L2 normalization.
* :class:`MarginHead`: one learned unit vector per training perturbagen; logits are cosine
  similarities times a scale (trainable, or AdaCos' fixed ``sqrt(2) ln(C - 1)``), with an
  additive cosine margin (CosFace, the paper's) or an additive angular margin (ArcFace) on
  the target class during training.
* :class:`MarginSchedule`: the margin ramps by ``ramp`` per optimizer step up to ``max``
  (paper: 0.0002 and 0.25), computed from the optimizer's own step counter so it resumes
  correctly from a checkpoint.

This module imports TensorFlow/Keras at import time: import it lazily (only when training
or embedding), never from code that loads the Dagster definitions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import keras
import numpy as np
from keras import layers, ops

PACKAGE = "l1000"


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and loss. Paper: depth 64, growth 16, embedding 32, noise 0.3,
    CosFace margin ramped by 0.0002 per step to 0.25, trainable scale."""

    n_genes: int = 978
    depth: int = 64
    growth: int = 16
    embedding_dim: int = 32
    noise_sd: float = 0.3
    head: str = "cosface"  # "cosface" or "arcface"
    scale: str = "trainable"  # "trainable" or "adacos" (fixed sqrt(2) ln(C-1))
    initial_scale: float = 30.0
    max_margin: float = 0.25
    margin_ramp: float = 0.0002

    def __post_init__(self) -> None:
        if self.head not in ("cosface", "arcface"):
            raise ValueError(f"head must be 'cosface' or 'arcface', not {self.head!r}")
        if self.scale not in ("trainable", "adacos"):
            raise ValueError(f"scale must be 'trainable' or 'adacos', not {self.scale!r}")
        if self.depth < 1 or self.growth < 1 or self.embedding_dim < 2:
            raise ValueError("depth, growth must be >= 1 and embedding_dim >= 2")

    def to_dict(self) -> dict:
        return asdict(self)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Standardize(layers.Layer):
    """``(x - mean) / sd`` with the training-set statistics stored as fixed weights."""

    def __init__(self, n_genes: int, **kwargs):
        super().__init__(**kwargs)
        self.n_genes = n_genes
        self.mean = self.add_weight(
            shape=(n_genes,), initializer="zeros", trainable=False, name="mean"
        )
        self.sd = self.add_weight(shape=(n_genes,), initializer="ones", trainable=False, name="sd")

    def set_statistics(self, mean: np.ndarray, sd: np.ndarray) -> None:
        self.mean.assign(np.asarray(mean, np.float32))
        self.sd.assign(np.asarray(sd, np.float32))

    def call(self, x):
        return (
            ops.cast(x, self.compute_dtype) - ops.cast(self.mean, self.compute_dtype)
        ) / ops.cast(self.sd, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "n_genes": self.n_genes}


@keras.saving.register_keras_serializable(package=PACKAGE)
class L2Normalize(layers.Layer):
    """Project onto the unit hypersphere (in float32, whatever the compute dtype)."""

    def call(self, x):
        x = ops.cast(x, "float32")
        return x / ops.sqrt(ops.maximum(ops.sum(x * x, axis=-1, keepdims=True), 1e-12))


@keras.saving.register_keras_serializable(package=PACKAGE)
class MarginHead(layers.Layer):
    """Cosine-similarity logits against one learned vector per class, with a margin.

    Call with ``[embeddings, labels]``; in training the target logit becomes
    ``s * (cos t_y - m)`` (CosFace) or ``s * cos(t_y + m)`` (ArcFace), the others
    ``s * cos t_j``. At inference no margin is applied.
    """

    def __init__(
        self,
        n_classes: int,
        kind: str = "cosface",
        scale: str = "trainable",
        initial_scale: float = 30.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.n_classes = n_classes
        self.kind = kind
        self.scale_mode = scale
        self.initial_scale = initial_scale

    def build(self, input_shape):
        dim = input_shape[0][-1]
        self.centers = self.add_weight(
            shape=(dim, self.n_classes), name="centers", initializer="glorot_normal"
        )
        fixed = math.sqrt(2.0) * math.log(max(self.n_classes - 1, 2))
        self.scale = self.add_weight(
            shape=(),
            name="scale",
            trainable=self.scale_mode == "trainable",
            initializer=keras.initializers.Constant(
                self.initial_scale if self.scale_mode == "trainable" else fixed
            ),
        )
        self.margin = self.add_weight(shape=(), name="margin", trainable=False, initializer="zeros")

    def cosines(self, embeddings):
        w = self.centers / ops.sqrt(
            ops.maximum(ops.sum(self.centers**2, axis=0, keepdims=True), 1e-12)
        )
        return ops.clip(ops.matmul(ops.cast(embeddings, "float32"), w), -1.0, 1.0)

    def call(self, inputs, training=False):
        embeddings, labels = inputs
        cos = self.cosines(embeddings)
        if training:
            onehot = ops.one_hot(ops.cast(ops.reshape(labels, (-1,)), "int32"), self.n_classes)
            if self.kind == "cosface":
                cos = cos - self.margin * onehot
            else:
                theta = ops.arccos(ops.clip(cos, -1.0 + 1e-6, 1.0 - 1e-6))
                cos = onehot * ops.cos(theta + self.margin) + (1.0 - onehot) * cos
        return self.scale * cos

    def get_config(self):
        return {
            **super().get_config(),
            "n_classes": self.n_classes,
            "kind": self.kind,
            "scale": self.scale_mode,
            "initial_scale": self.initial_scale,
        }


def margin_at(step: int, config: ModelConfig) -> float:
    """The margin after ``step`` optimizer steps."""
    return min(config.max_margin, config.margin_ramp * step)


class MarginSchedule(keras.callbacks.Callback):
    """Sets the head's margin from the optimizer's step count before every batch."""

    def __init__(self, head: MarginHead, config: ModelConfig):
        super().__init__()
        self.head = head
        self.config = config

    def on_train_batch_begin(self, batch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        self.head.margin.assign(margin_at(step, self.config))


def build_embedding_model(
    config: ModelConfig,
    mean: np.ndarray | None = None,
    sd: np.ndarray | None = None,
    name: str = "embedding",
) -> keras.Model:
    """Raw level-4 landmark z-scores ``(batch, n_genes)`` -> unit embeddings."""
    inputs = keras.Input(shape=(config.n_genes,), name="landmarks")
    standardize = Standardize(config.n_genes, name="standardize")
    x = standardize(inputs)
    if mean is not None:
        standardize.set_statistics(mean, sd)
    x = layers.GaussianNoise(config.noise_sd, name="input_noise")(x)
    features = [x]
    for i in range(config.depth):
        h = features[0] if len(features) == 1 else layers.Concatenate(name=f"concat_{i}")(features)
        features.append(
            layers.Dense(
                config.growth,
                activation="selu",
                kernel_initializer="lecun_normal",
                name=f"dense_{i}",
            )(h)
        )
    h = layers.Concatenate(name="concat_out")(features)
    z = layers.Dense(config.embedding_dim, kernel_initializer="lecun_normal", name="projection")(h)
    return keras.Model(inputs, L2Normalize(name="l2_normalize")(z), name=name)


def build_training_model(
    embedding: keras.Model, n_classes: int, config: ModelConfig
) -> tuple[keras.Model, MarginHead]:
    """``[profiles, labels]`` -> margin logits, sharing ``embedding``'s layers."""
    profiles = keras.Input(shape=(config.n_genes,), name="profiles")
    labels = keras.Input(shape=(), dtype="int32", name="labels")
    head = MarginHead(n_classes, config.head, config.scale, config.initial_scale, name="head")
    logits = head([embedding(profiles), labels])
    return keras.Model([profiles, labels], logits, name="training"), head


class GatherRows(layers.Layer):
    """Rows of a table held on the device, by index: the training input of a training set
    resident in device memory. The table is a constant of the run, never a weight, so it is
    neither trained nor saved."""

    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        self._table = table

    def call(self, rows):
        return ops.take(self._table, ops.cast(rows, "int32"), axis=0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, *self._table.shape[1:])


def build_resident_training_model(
    embedding: keras.Model, head: MarginHead, profiles, labels
) -> keras.Model:
    """``row indices`` -> margin logits of ``profiles[rows]`` against ``labels[rows]``: the
    training model of :func:`build_training_model` (the same ``embedding`` and ``head``
    layers, so the same weights) fed from tables already on the device."""
    rows = keras.Input(shape=(), dtype="int32", name="rows")
    x = GatherRows(profiles, name="profiles")(rows)
    y = GatherRows(labels, name="labels")(rows)
    return keras.Model(rows, head([embedding(x), y]), name="training_resident")


def embed(model: keras.Model, values: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Embeddings ``(n, embedding_dim)`` float32 of raw landmark z-scores (no noise)."""
    out = [
        np.asarray(model(values[i : i + batch_size], training=False))
        for i in range(0, len(values), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def count_parameters(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))
