"""The embedding network's forward pass in numpy: inference without TensorFlow.

Importing TensorFlow and loading the ``.keras`` file take seconds (most of a one-profile
read-across); the network itself is a few matrix products. So the embedding model's
weights are exported beside ``embedding.keras`` as ``embedding_weights.npz`` (by
:func:`~l1000_assets.core.model.store.save_model`, or :func:`export_weights` for a model
directory saved before), and :class:`NumpyEmbedding` runs the same layers as
:func:`~l1000_assets.core.model.network.build_embedding_model`:

* ``Standardize``: ``(x - mean) / sd``;
* ``GaussianNoise``: nothing at inference;
* ``depth`` dense layers, SELU, each on the concatenation of the standardized input and
  every earlier layer's output: one buffer of width ``n_genes + depth * growth`` is filled
  left to right, and layer ``i`` reads its first ``n_genes + i * growth`` columns (the
  concatenation, without copying it);
* the linear ``projection`` of the whole buffer, then L2 normalization (norm floored at
  ``1e-6``, as ``L2Normalize`` floors the squared norm at ``1e-12``).

:func:`weights_from_keras` refuses a model with any other layer, and :func:`export_weights`
checks the numpy pass against Keras on seeded random profiles before it writes, so an
exported file always computes what the model computes (within float32 rounding: 1e-5 on the
unit vectors; float16 for models trained with ``mixed_precision``, whose Keras pass rounds
more). The file records the SHA-256 of the ``.keras`` file it came from; a model directory
whose ``.keras`` file has changed since is not read by the old weights (:func:`load_weights`
returns None and the caller falls back to Keras).

This module never imports TensorFlow or Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.hashing import sha256_file

WEIGHTS_FILE = "embedding_weights.npz"
#: The layout of :data:`WEIGHTS_FILE`; a reader refuses other versions.
FORMAT_VERSION = 1
#: Layers the numpy pass implements (Keras class names).
_LAYER_TYPES = {
    "InputLayer",
    "Standardize",
    "GaussianNoise",
    "Dense",
    "Concatenate",
    "L2Normalize",
}
_SELU_ALPHA = np.float32(1.6732632423543772848170429916717)
_SELU_SCALE = np.float32(1.0507009873554804934193349852946)
#: Seeded random profiles the export checks the numpy pass on.
_CHECK_PROFILES = 64


@dataclass(frozen=True)
class NumpyEmbedding:
    """The embedding network's weights, and its forward pass in numpy.

    ``dense`` holds ``(kernel, bias)`` of each dense layer: kernel ``i`` is
    ``(n_genes + i * growth, growth)``; ``projection`` is ``(n_genes + depth * growth, d)``.
    """

    mean: NDArray[np.float32]  # (n_genes,)
    sd: NDArray[np.float32]  # (n_genes,)
    dense: tuple[tuple[NDArray[np.float32], NDArray[np.float32]], ...]
    projection: tuple[NDArray[np.float32], NDArray[np.float32]]

    def __post_init__(self) -> None:
        width = self.n_genes
        for i, (kernel, bias) in enumerate(self.dense):
            if kernel.shape[0] != width or bias.shape != (kernel.shape[1],):
                raise ValueError(
                    f"dense_{i}: kernel {kernel.shape}, bias {bias.shape}; expected "
                    f"{width} inputs (the input and every earlier layer's output)"
                )
            width += kernel.shape[1]
        if self.projection[0].shape[0] != width:
            raise ValueError(
                f"projection: kernel {self.projection[0].shape}, expected {width} inputs"
            )

    @property
    def n_genes(self) -> int:
        return int(self.mean.shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.projection[0].shape[1])

    @property
    def width(self) -> int:
        """The concatenated features' width: ``n_genes + depth * growth``."""
        return int(self.projection[0].shape[0])

    def embed(self, values: NDArray[np.floating], batch_size: int = 4096) -> NDArray[np.float32]:
        """Unit embeddings ``(n, embedding_dim)`` float32 of raw landmark z-scores
        ``(n, n_genes)`` in the model's gene order (as ``network.embed``)."""
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[1] != self.n_genes:
            raise ValueError(f"expected (n, {self.n_genes}) values, got {values.shape}")
        out = np.empty((len(values), self.embedding_dim), np.float32)
        features = np.empty((min(batch_size, len(values)), self.width), np.float32)
        for b0 in range(0, len(values), batch_size):
            block = values[b0 : b0 + batch_size]
            h = features[: len(block)]
            np.subtract(block, self.mean, out=h[:, : self.n_genes], dtype=np.float32)
            h[:, : self.n_genes] /= self.sd
            start = self.n_genes
            for kernel, bias in self.dense:
                z = h[:, :start] @ kernel
                z += bias
                h[:, start : start + kernel.shape[1]] = _selu(z)
                start += kernel.shape[1]
            z = h @ self.projection[0]
            z += self.projection[1]
            norms = np.sqrt(np.maximum(np.einsum("ij,ij->i", z, z), np.float32(1e-12)))
            out[b0 : b0 + len(block)] = z / norms[:, None]
        return out


def _selu(x: NDArray[np.float32]) -> NDArray[np.float32]:
    negative = _SELU_ALPHA * np.expm1(np.minimum(x, 0))
    return _SELU_SCALE * np.where(x > 0, x, negative)


def weights_from_keras(model) -> NumpyEmbedding:
    """The weights of a Keras embedding model built by ``build_embedding_model``.

    Raises ``ValueError`` for a model with layers the numpy pass does not implement, or
    dense layers that are not SELU (hidden) and linear (``projection``).
    """
    kinds = {type(layer).__name__ for layer in model.layers}
    if not kinds <= _LAYER_TYPES:
        raise ValueError(
            f"layers the numpy forward pass does not implement: {sorted(kinds - _LAYER_TYPES)}"
        )
    standardize = model.get_layer("standardize")
    dense = []
    i = 0
    while any(layer.name == f"dense_{i}" for layer in model.layers):
        layer = model.get_layer(f"dense_{i}")
        if layer.activation.__name__ != "selu" or not layer.use_bias:
            raise ValueError(f"dense_{i}: expected SELU with a bias, got {layer.activation}")
        kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
        dense.append((kernel, bias))
        i += 1
    projection = model.get_layer("projection")
    if projection.activation.__name__ != "linear" or not projection.use_bias:
        raise ValueError(f"projection: expected linear with a bias, got {projection.activation}")
    n_dense = sum(type(layer).__name__ == "Dense" for layer in model.layers)
    if n_dense != len(dense) + 1:
        raise ValueError(f"{n_dense} dense layers, expected dense_0..dense_{i - 1} + projection")
    mean, sd = (np.asarray(w, np.float32) for w in standardize.get_weights())
    kernel, bias = (np.asarray(w, np.float32) for w in projection.get_weights())
    return NumpyEmbedding(mean, sd, tuple(dense), (kernel, bias))


def _compute_dtype(model) -> str:
    dtypes = {getattr(layer, "compute_dtype", "float32") for layer in model.layers}
    return "float16" if "float16" in dtypes or "bfloat16" in dtypes else "float32"


def tolerance(model) -> float:
    """How far the numpy pass may be from Keras: 1e-5 in float32, 1e-2 when Keras computes
    in (b)float16 (mixed precision)."""
    return 1e-5 if _compute_dtype(model) == "float32" else 1e-2


def check_against_keras(net: NumpyEmbedding, model, seed: int = 0) -> float:
    """The largest difference between the numpy pass and Keras on seeded random profiles
    (raises ``ValueError`` beyond :func:`tolerance`)."""
    x = np.random.default_rng(seed).normal(0, 2, size=(_CHECK_PROFILES, net.n_genes))
    x = x.astype(np.float32)
    keras_z = np.asarray(model(x, training=False), np.float32)
    diff = float(np.max(np.abs(net.embed(x) - keras_z)))
    if not diff <= tolerance(model):
        raise ValueError(
            f"the numpy forward pass differs from Keras by {diff:.2g} (more than "
            f"{tolerance(model):g}): the model's layers are not the ones it implements"
        )
    return diff


def save_weights(net: NumpyEmbedding, path: str | Path, keras_file: str | Path) -> Path:
    """Write ``net`` as ``.npz`` (atomic), recording the SHA-256 of ``keras_file``."""
    arrays = {
        "format_version": np.asarray(FORMAT_VERSION),
        "keras_sha256": np.asarray(sha256_file(Path(keras_file))),
        "mean": net.mean,
        "sd": net.sd,
        "projection_kernel": net.projection[0],
        "projection_bias": net.projection[1],
    }
    for i, (kernel, bias) in enumerate(net.dense):
        arrays[f"dense_{i}_kernel"] = kernel
        arrays[f"dense_{i}_bias"] = bias
    path = Path(path)
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return path


def export_weights(model, model_dir: str | Path, keras_file: str | Path | None = None) -> Path:
    """Export a Keras embedding model's weights to ``model_dir/embedding_weights.npz``,
    after checking the numpy pass against the model (:func:`check_against_keras`).

    ``keras_file`` is the ``.keras`` file the model was saved as (default
    ``model_dir/embedding.keras``).
    """
    from l1000_assets.core.model.store import EMBEDDING_FILE

    model_dir = Path(model_dir)
    net = weights_from_keras(model)
    check_against_keras(net, model)
    return save_weights(net, model_dir / WEIGHTS_FILE, keras_file or model_dir / EMBEDDING_FILE)


def load_weights(model_dir: str | Path) -> NumpyEmbedding | None:
    """The exported weights of a model directory; None when there are none, or when they
    were exported from another ``embedding.keras`` than the one in the directory."""
    from l1000_assets.core.model.store import EMBEDDING_FILE

    model_dir = Path(model_dir)
    path = model_dir / WEIGHTS_FILE
    keras_file = model_dir / EMBEDDING_FILE
    if not path.exists() or not keras_file.exists():
        return None
    with np.load(path) as data:
        if int(data["format_version"]) != FORMAT_VERSION:
            return None
        if str(data["keras_sha256"]) != sha256_file(keras_file):
            return None
        depth = sum(1 for name in data.files if name.endswith("_kernel")) - 1
        dense = tuple((data[f"dense_{i}_kernel"], data[f"dense_{i}_bias"]) for i in range(depth))
        return NumpyEmbedding(
            data["mean"],
            data["sd"],
            dense,
            (data["projection_kernel"], data["projection_bias"]),
        )
