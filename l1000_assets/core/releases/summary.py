"""A release at a glance: its profiles per cell line and profile class, as a PNG."""

from __future__ import annotations

import io

import pandas as pd

CLASS_ORDER = ("compound", "genetic", "other", "control")


def profiles_plot_png(instances: pd.DataFrame, max_cell_lines: int = 30) -> bytes:
    """A horizontal bar chart (PNG bytes, 640 px wide): profiles of each cell line (the
    ``max_cell_lines`` largest), stacked by ``profile_class``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = (
        instances.assign(cell_id=instances["cell_id"].fillna("(none)"))
        .groupby(["cell_id", "profile_class"], observed=True)
        .size()
        .unstack(fill_value=0)
    )
    columns = [c for c in CLASS_ORDER if c in counts] + [c for c in counts if c not in CLASS_ORDER]
    counts = counts[columns]
    counts = counts.loc[counts.sum(axis=1).sort_values().index[-max_cell_lines:]]
    height = 1.2 + 0.28 * len(counts)
    fig, ax = plt.subplots(figsize=(6.4, height))
    left = pd.Series(0, index=counts.index)
    for name in counts.columns:
        ax.barh(counts.index, counts[name], left=left, label=name)
        left = left + counts[name]
    ax.set_xlabel("profiles", fontsize=9)
    ax.set_title("profiles per cell line, by class", fontsize=10)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out.getvalue()
