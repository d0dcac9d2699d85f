"""Saving and loading the trained model: ``.keras`` files, a JSON card, history and plot.

Layout of a model directory::

    embedding.keras   inference model: raw landmark z-scores (978, genes order) -> unit vectors
    embedding_weights.npz  the same network's weights, for the numpy forward pass
                      (core/model/forward.py: inference without TensorFlow)
    training.keras    the training model (embedding + margin head), for further training
    card.json         config, data version, gene order, normalization hash, split seed, figures
    landmark_stats.npz  mean, covariance and level-4 quantiles of the training profiles
                      (read-across from other platforms: imputation, quantile mapping)
    history.csv       one row per checkpoint chunk
    training.png      loss, accuracy, margin, scale and validation AUC against step

The directory is written to a temporary sibling and swapped in, so a failed save keeps the
previous model.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from l1000_assets.core.atomic import atomic_dir
from l1000_assets.core.model.forward import export_weights

EMBEDDING_FILE = "embedding.keras"
TRAINING_FILE = "training.keras"
CARD_FILE = "card.json"


def save_model(
    model_dir: Path,
    embedding,
    card: dict,
    history: list[dict],
    training_model=None,
    extra_files: Mapping[str, Callable[[Path], object]] | None = None,
) -> Path:
    """Write the model directory; ``extra_files``: name -> writer of further files that
    belong to the model (the read-across landmark statistics), written into it before the
    swap."""
    with atomic_dir(model_dir) as tmp:
        embedding.save(tmp / EMBEDDING_FILE)
        export_weights(embedding, tmp)
        for name, write in (extra_files or {}).items():
            write(tmp / name)
        if training_model is not None:
            training_model.save(tmp / TRAINING_FILE)
        (tmp / CARD_FILE).write_text(json.dumps(card, indent=2, default=_jsonable) + "\n")
        if history:
            with open(tmp / "history.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(history[0]))
                writer.writeheader()
                writer.writerows(history)
            plot_history(history, tmp / "training.png")
    return model_dir


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def load_card(model_dir: Path) -> dict:
    return json.loads((Path(model_dir) / CARD_FILE).read_text())


def load_embedding(model_dir: Path):
    """The inference model (registers the custom layers by importing ``core.model``)."""
    import keras

    import l1000_assets.core.model.network  # noqa: F401  (registers the custom layers)

    return keras.saving.load_model(Path(model_dir) / EMBEDDING_FILE)


def export_model_weights(model_dir: Path) -> Path:
    """Export the weights of a model directory saved before they were exported at save
    time (or whose ``.keras`` file changed): loads the Keras model once."""
    model_dir = Path(model_dir)
    if not (model_dir / EMBEDDING_FILE).exists():
        raise FileNotFoundError(model_dir / EMBEDDING_FILE)
    return export_weights(load_embedding(model_dir), model_dir)


def plot_history(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    panels = [
        ("loss", "loss"),
        ("accuracy", "training accuracy"),
        ("validation_auc", "validation AUC"),
        ("margin", "margin"),
        ("scale", "scale"),
    ]
    # Three panels a row (720 px wide: whole in the UI's metadata view), saved with a tight
    # bounding box so that no title or tick label is cut off.
    fig, axes = plt.subplots(2, 3, figsize=(9, 5.2), squeeze=False)
    flat = list(axes.flat)
    for ax, (key, title) in zip(flat, panels):
        values = [h.get(key, float("nan")) for h in history]
        if all(v != v for v in values):  # all NaN: e.g. no validation split in ``all``
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.plot(steps, values, marker=".")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=80, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
