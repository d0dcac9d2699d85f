"""How hard is a synthetic release? The z-score baselines on held-out perturbagens.

The paper's protocol (``science.md`` section 3) on the level-4 landmark values: the held-out
perturbagens are those of the platform's own split (the test fold of
:func:`~l1000_assets.core.model.split.assign_splits`, about 20%, the perturbagens a model of
that split never trains on); every held-out profile queries the other held-out profiles,
positives = same perturbagen. Real L1000 gives z-score cosine an AUC of 0.696; a fair
synthetic release should land in roughly 0.65 to 0.75.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from l1000_assets.core.evaluation.metrics import (
    SUMMARY_METRICS,
    RetrievalSummary,
    same_label_quantiles,
)
from l1000_assets.core.formats.gctx import GctxReader
from l1000_assets.core.model.split import heldout_perturbagens
from l1000_assets.core.releases.schema import CONTROL_PERT_TYPES, GENETIC_PERT_TYPES
from l1000_assets.core.releases.synthetic import (
    SyntheticConfig,
    simulate_landmark_profiles,
)

GROUPS = ("all", "small molecules", "genetic")


@dataclass(frozen=True)
class CalibrationRow:
    group: str
    method: str
    summary: RetrievalSummary


def group_mask(pert_type: pd.Series, group: str) -> NDArray[np.bool_]:
    if group == "all":
        return np.ones(len(pert_type), dtype=bool)
    if group == "small molecules":
        return (pert_type == "trt_cp").to_numpy()
    if group == "genetic":
        return pert_type.isin(GENETIC_PERT_TYPES).to_numpy()
    raise ValueError(f"unknown group {group!r}")


def zscore_baselines(
    inst: pd.DataFrame,
    values: NDArray[np.float32],
    *,
    split_seed: int = 0,
    methods: tuple[str, ...] = ("cosine", "euclidean"),
) -> list[CalibrationRow]:
    """Z-score cosine/Euclidean retrieval of same-perturbagen profiles on the held-out
    perturbagens of the split of ``split_seed``."""
    keep = ~inst["pert_type"].isin(CONTROL_PERT_TYPES).to_numpy()
    inst, values = inst[keep].reset_index(drop=True), values[keep]
    held = heldout_perturbagens(inst["pert_id"], seed=split_seed)
    return _baselines(inst, values, inst["pert_id"].isin(held).to_numpy(), methods)


def _baselines(
    inst: pd.DataFrame,
    values: NDArray[np.float32],
    is_held: NDArray[np.bool_],
    methods: tuple[str, ...],
) -> list[CalibrationRow]:
    """The rows of :func:`zscore_baselines` for the treated profiles ``is_held``."""
    rows = []
    for group in GROUPS:
        sel = is_held & group_mask(inst["pert_type"], group)
        if sel.sum() < 2:
            continue
        for method in methods:
            q = same_label_quantiles(values[sel], inst["pert_id"].to_numpy()[sel], metric=method)
            rows.append(
                CalibrationRow(
                    group, f"z-score {method}", RetrievalSummary.from_quantiles(q, int(sel.sum()))
                )
            )
    return rows


def release_baselines(
    level4: Path,
    inst: pd.DataFrame,
    landmark_ids: list[str],
    *,
    max_profiles: int = 20_000,
    split_seed: int = 0,
    methods: tuple[str, ...] = ("cosine",),
) -> list[CalibrationRow]:
    """The z-score baselines on a written release, in bounded memory.

    The held-out perturbagens (whole perturbagens, so positives stay together) are
    subsampled to at most about ``max_profiles`` profiles, and only their columns are kept
    while the GCTX's landmark rows are streamed.
    """
    treated = inst[~inst["pert_type"].isin(CONTROL_PERT_TYPES)]
    held = heldout_perturbagens(treated["pert_id"], seed=split_seed)
    sizes = treated[treated["pert_id"].isin(held)].groupby("pert_id").size()
    order = np.random.default_rng(split_seed).permutation(sizes.index.to_numpy())
    keep_perts = order[
        : max(
            2,
            int(np.searchsorted(sizes.loc[order].cumsum().to_numpy(), max_profiles, side="right")),
        )
    ]
    chosen = inst[inst["pert_id"].isin(keep_perts)]
    with GctxReader(level4) as reader:
        position = pd.Series(np.arange(len(reader.col_ids)), index=reader.col_ids)
        wanted = np.sort(position.loc[chosen["inst_id"].astype(str)].to_numpy())
        rows = reader.row_positions(landmark_ids)
        parts = []
        for block in reader.iter_blocks(rows):
            inside = wanted[(wanted >= block.start) & (wanted < block.stop)]
            if len(inside):
                parts.append(block.values[inside - block.start])
    values = np.concatenate(parts)
    ordered = inst.set_index("inst_id").loc[reader.col_ids[wanted]].reset_index()
    return _baselines(ordered, values, np.ones(len(ordered), bool), methods)


def calibrate(config: SyntheticConfig, **kwargs) -> list[CalibrationRow]:
    """Simulate ``config``'s landmark profiles in memory and score the z-score baselines."""
    inst, values = simulate_landmark_profiles(config)
    return zscore_baselines(inst, values, **kwargs)


def format_rows(rows: list[CalibrationRow]) -> str:
    """A markdown table of the rows, laid out like the paper's Table 1."""
    lines = [
        "| group | method | queries | median q | top-0.001 | top-0.01 | top-0.1 | AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r.summary
        figures = " | ".join(f"{s[m]:.3f}" for m in SUMMARY_METRICS)
        lines.append(f"| {r.group} | {r.method} | {s.n_queries} | {figures} |")
    return "\n".join(lines)
