"""The perturbagen map: a 2-D layout of the perturbagen embeddings, with query profiles
marked, as a PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from l1000_assets.core.atomic import atomic_file
from l1000_assets.core.embeddings.vectors import (
    EMBEDDING_COLUMN,
    normalize_rows,
    vector_matrix,
)


def query_points(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The query profiles of the read-across ``queries`` table and their unit embeddings."""
    if not path.exists():
        return pd.DataFrame({"query_id": []}), np.zeros((0, 0), np.float32)
    table = pq.read_table(path)
    if not table.num_rows:
        return pd.DataFrame({"query_id": []}), np.zeros((0, 0), np.float32)
    vectors = normalize_rows(vector_matrix(table.column(EMBEDDING_COLUMN)))
    return table.drop_columns([EMBEDDING_COLUMN]).to_pandas(), vectors


def layout(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    """2-D coordinates of the rows of ``x``: t-SNE (cosine) or PCA."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if len(x) < 3 or method == "pca":
        return (
            PCA(n_components=2, random_state=seed).fit_transform(x)
            if len(x) >= 2
            else np.zeros((len(x), 2))
        )
    perplexity = float(min(30.0, (len(x) - 1) / 3))
    return TSNE(
        n_components=2, perplexity=perplexity, metric="cosine", init="pca", random_state=seed
    ).fit_transform(x)


def place_queries(x: np.ndarray, xy: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Map positions of query embeddings on a fixed map of ``x`` (laid out at ``xy``),
    without refitting it: each query at the similarity-weighted mean position of its ``k``
    most similar perturbagens (the out-of-sample placement t-SNE allows; the map itself does
    not move when queries come or go). ``x`` and ``queries`` are unit rows."""
    if not len(queries) or not len(x):
        return np.zeros((len(queries), 2))
    k = min(k, len(x))
    sims = queries.astype(np.float32) @ x.astype(np.float32).T  # queries x perturbagens
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    weights = np.clip(np.take_along_axis(sims, top, axis=1), 0, None) + 1e-6
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("qk,qkd->qd", weights, xy[top])


def plot_map(
    perts: pd.DataFrame,
    xy: np.ndarray,
    queries: pd.DataFrame,
    qxy: np.ndarray,
    path: Path,
    method: str,
    n_moas: int = 10,
) -> None:
    """The map as a PNG, coloured by perturbagen type and by MOA, queries as stars (atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 6))
    moa = perts["moa"].fillna("unknown")
    top = moa[moa != "unknown"].value_counts().index[:n_moas]
    colour_by = {
        "perturbagen type": perts["pert_type"].fillna("unknown"),
        f"MOA (top {n_moas})": moa.where(moa.isin(top), "other / unknown"),
    }
    for ax, (title, labels) in zip(axes, colour_by.items()):
        cmap = plt.get_cmap("tab10" if labels.nunique() <= 10 else "tab20")
        groups = sorted(labels.unique(), key=lambda g: (g in ("other / unknown", "unknown"), g))
        for i, group in enumerate(groups):
            sel = (labels == group).to_numpy()
            grey = group in ("other / unknown", "unknown")
            ax.scatter(
                xy[sel, 0],
                xy[sel, 1],
                s=10 if grey else 20,
                alpha=0.5 if grey else 0.9,
                color="lightgrey" if grey else cmap(i % cmap.N),
                label=f"{group} ({sel.sum()})",
                linewidths=0,
            )
        if len(qxy):
            ax.scatter(
                qxy[:, 0],
                qxy[:, 1],
                marker="*",
                s=160,
                color="black",
                edgecolors="white",
                linewidths=0.6,
                label="query profiles",
                zorder=5,
            )
            for (x0, y0), name in list(zip(qxy, queries["query_id"].astype(str)))[:20]:
                ax.annotate(name, (x0, y0), fontsize=7, xytext=(4, 4), textcoords="offset points")
        ax.set_title(f"perturbagens by {title}")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=7, markerscale=1.2, loc="best", framealpha=0.8)
    fig.suptitle(
        f"perturbagen embeddings ({method.upper() if method == 'pca' else 't-SNE'}, "
        f"{len(xy)} perturbagens)"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
