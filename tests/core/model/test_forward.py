"""The numpy forward pass against Keras, and the exported weights beside the model."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from l1000_assets.core.model.forward import (
    WEIGHTS_FILE,
    NumpyEmbedding,
    export_weights,
    load_weights,
    weights_from_keras,
)
from l1000_assets.core.model.network import ModelConfig, build_embedding_model, embed
from l1000_assets.core.model.store import (
    EMBEDDING_FILE,
    export_model_weights,
    load_embedding,
    save_model,
)


def _trained_like(config: ModelConfig, seed: int) -> keras.Model:
    """A model with statistics and weights far from their initial values (biases non-zero),
    as training leaves them."""
    rng = np.random.default_rng(seed)
    model = build_embedding_model(
        config, rng.normal(0, 1, config.n_genes), rng.uniform(0.3, 3, config.n_genes)
    )
    for layer in model.layers:
        if layer.name.startswith(("dense_", "projection")):
            kernel, bias = layer.get_weights()
            layer.set_weights(
                [kernel * rng.uniform(0.5, 1.5), rng.normal(0, 0.3, bias.shape).astype("f4")]
            )
    return model


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(depth=1, growth=4, embedding_dim=2),
        ModelConfig(depth=3, growth=8, embedding_dim=8),
        ModelConfig(depth=16, growth=32, embedding_dim=32),  # the demo configuration
        ModelConfig(depth=64, growth=16, embedding_dim=32),  # the paper's
        ModelConfig(n_genes=50, depth=5, growth=7, embedding_dim=3),
    ],
    ids=lambda c: f"{c.n_genes}g-d{c.depth}-k{c.growth}-e{c.embedding_dim}",
)
def test_numpy_pass_equals_keras(config):
    model = _trained_like(config, seed=config.depth)
    net = weights_from_keras(model)
    assert (net.n_genes, net.embedding_dim) == (config.n_genes, config.embedding_dim)
    rng = np.random.default_rng(1)
    for x in (
        rng.normal(0, 1, (300, config.n_genes)),  # z-score-like
        rng.standard_t(3, (7, config.n_genes)) * 4,  # heavy tails
        rng.normal(0, 1, (1, config.n_genes)),  # one profile
    ):
        x = x.astype(np.float32)
        np.testing.assert_allclose(net.embed(x, batch_size=128), embed(model, x), atol=1e-5)
    assert net.embed(np.zeros((0, config.n_genes), np.float32)).shape == (0, config.embedding_dim)


def test_export_load_round_trip_and_staleness(tmp_path):
    config = ModelConfig(depth=4, growth=8, embedding_dim=8)
    model = _trained_like(config, seed=3)
    save_model(tmp_path / "m", model, {"gene_order": []}, [])
    assert (tmp_path / "m" / WEIGHTS_FILE).exists()  # exported at save time
    net = load_weights(tmp_path / "m")
    x = np.random.default_rng(0).normal(size=(20, 978)).astype(np.float32)
    np.testing.assert_allclose(net.embed(x), embed(load_embedding(tmp_path / "m"), x), atol=1e-5)

    # Another .keras in the directory: the old weights are not read, and can be exported again.
    other = _trained_like(config, seed=4)
    other.save(tmp_path / "m" / EMBEDDING_FILE)
    assert load_weights(tmp_path / "m") is None
    export_model_weights(tmp_path / "m")
    np.testing.assert_allclose(load_weights(tmp_path / "m").embed(x), embed(other, x), atol=1e-5)

    (tmp_path / "m" / WEIGHTS_FILE).unlink()
    assert load_weights(tmp_path / "m") is None  # a model saved before the export


def test_other_layers_are_refused(tmp_path):
    inputs = keras.Input(shape=(978,))
    hidden = keras.layers.Dense(4, activation="relu", name="dense_0")(inputs)
    model = keras.Model(inputs, keras.layers.Dropout(0.1)(hidden))
    with pytest.raises(ValueError, match="Dropout"):
        weights_from_keras(model)
    relu = build_embedding_model(ModelConfig(depth=2, growth=4, embedding_dim=4))
    relu.get_layer("dense_1").activation = keras.activations.relu
    with pytest.raises(ValueError, match="dense_1: expected SELU"):
        weights_from_keras(relu)
    # The numerical check catches what the layer check cannot see.
    with pytest.raises(ValueError, match="differs from Keras"):
        export_weights(_Shifted(_trained_like(ModelConfig(depth=2, growth=4), 1)), tmp_path)


class _Shifted:
    """A model whose output is not what its layers say (as a changed ``call`` would be)."""

    def __init__(self, model):
        self.layers = model.layers
        self.get_layer = model.get_layer
        self._model = model

    def __call__(self, x, training=False):
        return np.asarray(self._model(x, training=training)) + 0.01


def test_shapes_are_checked():
    kernel = np.zeros((978, 4), np.float32)
    with pytest.raises(ValueError, match="dense_1"):
        NumpyEmbedding(
            np.zeros(978, np.float32),
            np.ones(978, np.float32),
            ((kernel, np.zeros(4, np.float32)), (kernel, np.zeros(4, np.float32))),
            (np.zeros((986, 2), np.float32), np.zeros(2, np.float32)),
        )


def test_loading_weights_imports_no_tensorflow(tmp_path):
    save_model(tmp_path / "m", _trained_like(ModelConfig(depth=2, growth=4), 0), {}, [])
    code = (
        "import sys, numpy as np;"
        "from l1000_assets.core.model.forward import load_weights;"
        f"net = load_weights({str(tmp_path / 'm')!r});"
        "z = net.embed(np.ones((2, 978), np.float32));"
        "assert abs(float((z * z).sum()) - 2) < 1e-5;"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_mixed_precision_model_is_exported_within_float16_rounding(tmp_path):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _trained_like(ModelConfig(depth=16, growth=32, embedding_dim=32), seed=5)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    export_weights(model, tmp_path, keras_file=__file__)  # checked within 1e-2
    x = np.random.default_rng(2).normal(size=(50, 978)).astype(np.float32)
    net = weights_from_keras(model)
    assert np.max(np.abs(net.embed(x) - embed(model, x))) < 1e-2
