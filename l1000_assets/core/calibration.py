"""How hard is a synthetic release? The z-score baselines on held-out perturbagens.

The paper's protocol (``science.md`` section 3) on the level-4 landmark values: split the
perturbagens 80/20, query every held-out profile against the other held-out profiles,
positives = same perturbagen. Real L1000 gives z-score cosine an AUC of 0.696; a fair
synthetic release should land in roughly 0.65 to 0.75.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from l1000_assets.core.metadata import CONTROL_PERT_TYPES, GENETIC_PERT_TYPES
from l1000_assets.core.metrics import RetrievalSummary, same_label_quantiles
from l1000_assets.core.synthetic import SyntheticConfig, simulate_landmark_profiles

GROUPS = ("all", "small molecules", "genetic")


@dataclass(frozen=True)
class CalibrationRow:
    group: str
    method: str
    summary: RetrievalSummary


def holdout_perturbagens(pert_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded ``fraction`` of the unique perturbagen ids (sorted first: order-independent)."""
    unique = np.sort(pd.unique(np.asarray(pert_ids)))
    rng = np.random.default_rng(seed)
    return rng.choice(unique, size=max(2, round(fraction * len(unique))), replace=False)


def group_mask(pert_type: pd.Series, group: str) -> np.ndarray:
    if group == "all":
        return np.ones(len(pert_type), dtype=bool)
    if group == "small molecules":
        return (pert_type == "trt_cp").to_numpy()
    if group == "genetic":
        return pert_type.isin(GENETIC_PERT_TYPES).to_numpy()
    raise ValueError(f"unknown group {group!r}")


def zscore_baselines(
    inst: pd.DataFrame,
    values: np.ndarray,
    *,
    holdout_fraction: float = 0.2,
    split_seed: int = 0,
    methods: tuple[str, ...] = ("cosine", "euclidean"),
) -> list[CalibrationRow]:
    """Z-score cosine/Euclidean retrieval of same-perturbagen profiles, held-out perturbagens."""
    keep = ~inst["pert_type"].isin(CONTROL_PERT_TYPES).to_numpy()
    inst, values = inst[keep].reset_index(drop=True), values[keep]
    held = holdout_perturbagens(inst["pert_id"].to_numpy(), holdout_fraction, split_seed)
    is_held = inst["pert_id"].isin(held).to_numpy()
    rows = []
    for group in GROUPS:
        sel = is_held & group_mask(inst["pert_type"], group)
        if sel.sum() < 2:
            continue
        for method in methods:
            q = same_label_quantiles(values[sel], inst["pert_id"].to_numpy()[sel], metric=method)
            rows.append(CalibrationRow(group, f"z-score {method}",
                                       RetrievalSummary.from_quantiles(q, int(sel.sum()))))
    return rows


def calibrate(config: SyntheticConfig, **kwargs) -> list[CalibrationRow]:
    """Simulate ``config``'s landmark profiles in memory and score the z-score baselines."""
    inst, values = simulate_landmark_profiles(config)
    return zscore_baselines(inst, values, **kwargs)


def format_rows(rows: list[CalibrationRow]) -> str:
    """A markdown table of the rows, laid out like the paper's Table 1."""
    lines = ["| group | method | queries | median q | top-0.001 | top-0.01 | top-0.1 | AUC |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r.summary
        lines.append(f"| {r.group} | {r.method} | {s.n_queries} | {s.median_quantile:.3f} | "
                     f"{s.recall_top_0001:.3f} | {s.recall_top_001:.3f} | {s.recall_top_01:.3f} | "
                     f"{s.auc:.3f} |")
    return "\n".join(lines)
