"""The embedding network, its margin head and schedule, saving and loading."""

import subprocess
import sys

import keras
import numpy as np
import pytest

from l1000_assets.core.model.network import (  # noqa: E402
    MarginHead,
    MarginSchedule,
    ModelConfig,
    build_embedding_model,
    build_training_model,
    count_parameters,
    embed,
    margin_at,
)
from l1000_assets.core.model.store import load_card, load_embedding, save_model  # noqa: E402

TINY = ModelConfig(depth=3, growth=8, embedding_dim=8)


def test_output_is_unit_norm_and_shaped():
    rng = np.random.default_rng(0)
    mean, sd = rng.normal(size=978), rng.uniform(0.5, 2, size=978)
    model = build_embedding_model(TINY, mean, sd)
    x = rng.normal(size=(5, 978)).astype(np.float32)
    z = embed(model, x)
    assert z.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1, atol=1e-5)
    std = model.get_layer("standardize")(x).numpy()
    np.testing.assert_allclose(std, (x - mean) / sd, rtol=1e-4, atol=1e-4)


def test_noise_only_in_training():
    model = build_embedding_model(TINY)
    x = np.ones((3, 978), np.float32)
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=False))


def test_densenet_connectivity_and_paper_size():
    model = build_embedding_model(TINY)
    # Layer i sees the input and all i earlier outputs: 978 + 8 * i inputs.
    for i in range(TINY.depth):
        assert model.get_layer(f"dense_{i}").kernel.shape == (978 + 8 * i, 8)
    assert model.get_layer("dense_0").activation.__name__ == "selu"
    paper = build_embedding_model(ModelConfig())
    assert 1.4e6 < count_parameters(paper) < 1.7e6  # the paper: about 1.5M


def test_margin_schedule_values():
    cfg = ModelConfig()
    assert margin_at(0, cfg) == 0
    assert margin_at(500, cfg) == pytest.approx(0.1)
    assert margin_at(1250, cfg) == pytest.approx(0.25)
    assert margin_at(100_000, cfg) == 0.25


@pytest.mark.parametrize("kind", ["cosface", "arcface"])
def test_margin_logits(kind):
    head = MarginHead(4, kind=kind, initial_scale=10.0)
    emb = np.eye(4, 3, dtype=np.float32)[:2] / 1.0
    labels = np.array([1, 2])
    head([emb, labels])
    head.margin.assign(0.2)
    cos = head.cosines(emb).numpy()
    train = head([emb, labels], training=True).numpy()
    infer = head([emb, labels], training=False).numpy()
    np.testing.assert_allclose(infer, 10 * cos, rtol=1e-5)
    for row, y in enumerate(labels):
        expected = cos[row, y] - 0.2 if kind == "cosface" else np.cos(np.arccos(cos[row, y]) + 0.2)
        assert train[row, y] == pytest.approx(10 * expected, abs=1e-3)
        others = [j for j in range(4) if j != y]
        np.testing.assert_allclose(train[row, others], 10 * cos[row, others], rtol=1e-5)


def test_adacos_scale_is_fixed():
    head = MarginHead(101, scale="adacos")
    head([np.zeros((1, 4), np.float32), np.array([0])])
    assert head.scale.numpy() == pytest.approx(np.sqrt(2) * np.log(100))
    assert not head.scale.trainable


def test_margin_really_advances_during_fit():
    cfg = ModelConfig(depth=2, growth=4, embedding_dim=4, margin_ramp=0.01, max_margin=0.25)
    emb = build_embedding_model(cfg)
    model, head = build_training_model(emb, 3, cfg)
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    x = np.random.default_rng(0).normal(size=(64, 978)).astype(np.float32)
    y = np.arange(64) % 3
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(head.margin.numpy()))

    model.fit(
        (x, y),
        y,
        batch_size=8,
        epochs=4,
        verbose=0,
        callbacks=[MarginSchedule(head, cfg), Record()],
    )
    # Set before each step from the optimizer's count: 0, 0.01, 0.02, ... capped at 0.25.
    np.testing.assert_allclose(seen, [min(0.25, 0.01 * i) for i in range(32)], atol=1e-6)
    assert int(model.optimizer.iterations.numpy()) == 32


def _in_fresh_process(code: str, directory) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter with ``directory`` as ``sys.argv[1]``; it must succeed."""
    out = subprocess.run(
        [sys.executable, "-c", code, str(directory)], capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_save_and_load_in_a_fresh_process(tmp_path):
    rng = np.random.default_rng(1)
    model = build_embedding_model(TINY, rng.normal(size=978), rng.uniform(1, 2, size=978))
    x = rng.normal(size=(7, 978)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = embed(model, x)
    save_model(
        tmp_path / "m",
        model,
        {"gene_order": ["1", "2"], "note": "test"},
        [
            {
                "step": 1,
                "loss": 2.0,
                "accuracy": 0.1,
                "validation_auc": 0.5,
                "margin": 0.0,
                "scale": 30.0,
            }
        ],
    )
    assert load_card(tmp_path / "m")["note"] == "test"
    assert (tmp_path / "m" / "training.png").exists()
    code = (
        "import numpy as np, sys; from pathlib import Path;"
        "from l1000_assets.core.model.store import load_embedding;"
        "from l1000_assets.core.model.network import embed;"
        "d = Path(sys.argv[1]); m = load_embedding(d / 'm');"
        "np.save(d / 'z.npy', embed(m, np.load(d / 'x.npy')))"
    )
    _in_fresh_process(code, tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "z.npy"), expected)
    again = load_embedding(tmp_path / "m")
    assert again.get_layer("standardize").mean.shape == (978,)


def test_training_model_round_trip_keeps_the_head(tmp_path):
    emb = build_embedding_model(TINY)
    model, head = build_training_model(emb, 5, TINY)
    x = np.random.default_rng(2).normal(size=(4, 978)).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    head.margin.assign(0.1)
    expected = model([x, y], training=False).numpy()
    save_model(tmp_path / "m", emb, {}, [], training_model=model)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import numpy as np, sys, keras; from pathlib import Path;"
        "import l1000_assets.core.model.network;"
        "d = Path(sys.argv[1]); m = keras.saving.load_model(d / 'm' / 'training.keras');"
        "h = m.get_layer('head'); x = np.load(d / 'x.npy');"
        "np.save(d / 'logits.npy', m([x, np.arange(4)], training=False).numpy());"
        "print(float(h.margin.numpy()), h.kind, h.n_classes)"
    )
    out = _in_fresh_process(code, tmp_path)
    assert out.stdout.split()[-3:] == [str(np.float32(0.1).item()), "cosface", "5"]
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected, rtol=1e-6)
