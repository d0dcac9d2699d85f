"""How hard is a synthetic release? Every published z-score figure, side by side.

A synthetic release is calibrated against the *baselines* of Donner et al. (2018), never
against the embedding: whatever the embedding then does is a result, not a target. The
figures (``science.md`` section 3) are computed with the platform's own code on the
platform's own held-out perturbagens (the test fold of
:func:`~l1000_assets.core.model.split.heldout_perturbagens`, about 20%):

Ranks are pooled over the held-out sets of several split seeds (:data:`SPLIT_SEEDS`), as
the paper pools its 41 splits: one 20% split of a 36,000-profile release holds about 80
compounds, too few for a stable figure.

* same-perturbagen retrieval (every held-out profile queries the others; positives: the
  same perturbagen) by z-score cosine: median q, recall at top-0.001 / 0.01 / 0.1, AUC;
  and by z-score Euclidean: AUC;
* biological-replicate retrieval (positives: same perturbagen, cell line, dose and time) by
  z-score cosine: AUC and top-0.01 recall;
* drug level on held-out compounds (one vector per compound: its mean z-score profile;
  positives share at least one MOA, or one target): z-score cosine AUC beside the paper's
  ATC-class and ChEMBL-target figures, and the structure baseline (ECFP4 Tanimoto), for
  which ``science.md`` quotes no figure: it is reported, not banded.

Same-perturbagen and replicate retrieval use
:func:`~l1000_assets.core.evaluation.retrieval.retrieval` (exact mode), drug level
:func:`~l1000_assets.core.evaluation.structure.drug_level_quantiles`; every summary is
:func:`~l1000_assets.core.evaluation.metrics.summarize_quantiles`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from l1000_assets.core.evaluation.metrics import RetrievalSummary
from l1000_assets.core.evaluation.retrieval import retrieval
from l1000_assets.core.evaluation.structure import (
    annotation_sets,
    cosine_scores,
    drug_level_quantiles,
    tanimoto_scores,
)
from l1000_assets.core.formats.gctx import GctxReader
from l1000_assets.core.model.split import heldout_perturbagens
from l1000_assets.core.releases.schema import CONTROL_PERT_TYPES, GENETIC_PERT_TYPES

GROUPS = ("all", "small molecules", "genetic")
SPLIT_SEEDS = (0, 1, 2)
"""Split seeds whose held-out ranks are pooled (the paper pools 41 random splits)."""


@dataclass(frozen=True)
class Target:
    """A published figure and the band a synthetic release should land in (None: no
    published figure to band against; reported only)."""

    label: str
    paper: str
    band: tuple[float, float] | None


_SAME = "same perturbagen, z-score"
_REP = "replicates, z-score cosine"
_DRUG = "drug level"
_NOT_QUOTED = "Table 2: not in science.md"
_ATC, _CHEMBL = "0.785-0.820 (ATC)", "0.826 (ChEMBL)"
TARGETS: dict[str, Target] = {
    "same_cosine_median_q": Target(f"{_SAME} cosine: median q", "0.170", (0.10, 0.25)),
    "same_cosine_top_0.001": Target(f"{_SAME} cosine: top-0.001", "0.064", (0.03, 0.15)),
    "same_cosine_top_0.01": Target(f"{_SAME} cosine: top-0.01", "0.265", (0.19, 0.34)),
    "same_cosine_top_0.1": Target(f"{_SAME} cosine: top-0.1", "0.430", (0.36, 0.51)),
    "same_cosine_auc": Target(f"{_SAME} cosine: AUC", "0.696", (0.65, 0.76)),
    "same_euclidean_auc": Target(f"{_SAME} Euclidean: AUC", "0.517", (0.47, 0.67)),
    "replicate_cosine_auc": Target(f"{_REP}: AUC", "0.843", (0.76, 0.89)),
    "replicate_cosine_top_0.01": Target(f"{_REP}: top-0.01", "0.590", (0.40, 0.68)),
    "moa_cosine_auc": Target(f"{_DRUG}, MOA, z-score cosine: AUC", _ATC, (0.60, 0.88)),
    "target_cosine_auc": Target(f"{_DRUG}, target, z-score cosine: AUC", _CHEMBL, (0.60, 0.88)),
    "moa_tanimoto_auc": Target(f"{_DRUG}, MOA, ECFP4 Tanimoto: AUC", _NOT_QUOTED, None),
    "target_tanimoto_auc": Target(f"{_DRUG}, target, ECFP4 Tanimoto: AUC", _NOT_QUOTED, None),
}  # fmt: skip
"""Every calibrated figure: what the paper reports (``science.md``) and the band."""


@dataclass(frozen=True)
class CalibrationRow:
    """One retrieval in the layout of the paper's Table 1."""

    protocol: str
    group: str
    method: str
    summary: RetrievalSummary


@dataclass
class Calibration:
    """The figures of one release (:data:`TARGETS` keys -> value) and the Table-1 rows."""

    figures: dict[str, float]
    rows: list[CalibrationRow] = field(default_factory=list)

    def outside_band(self) -> dict[str, float]:
        """Figures outside their band (NaN counts as outside)."""
        out = {}
        for key, target in TARGETS.items():
            if target.band is None or key not in self.figures:
                continue
            lo, hi = target.band
            v = self.figures[key]
            if not (lo <= v <= hi):
                out[key] = v
        return out


def group_mask(pert_type: pd.Series, group: str) -> NDArray[np.bool_]:
    if group == "all":
        return np.ones(len(pert_type), dtype=bool)
    if group == "small molecules":
        return (pert_type == "trt_cp").to_numpy()
    if group == "genetic":
        return pert_type.isin(GENETIC_PERT_TYPES).to_numpy()
    raise ValueError(f"unknown group {group!r}")


def _heldout(inst: pd.DataFrame, split_seed: int) -> NDArray[np.bool_]:
    return inst["pert_id"].isin(heldout_perturbagens(inst["pert_id"], seed=split_seed)).to_numpy()


def _treated(inst: pd.DataFrame, values: NDArray[np.float32]):
    keep = ~inst["pert_type"].isin(CONTROL_PERT_TYPES).to_numpy()
    return inst[keep].reset_index(drop=True), values[keep]


def _profile_retrieval(x, labels, metric):
    n = len(x)
    return retrieval(x, labels, x, labels, metric=metric, self_index=np.arange(n), mode="exact")


def condition_labels(inst: pd.DataFrame) -> NDArray[np.str_]:
    """Biological-replicate labels: perturbagen, cell line, dose and time."""
    return (
        inst["pert_id"].astype(str)
        + "|"
        + inst["cell_id"].astype(str)
        + "|"
        + inst["pert_dose"].astype(str)
        + "|"
        + inst["pert_time"].astype(str)
    ).to_numpy()


def compound_means(
    inst: pd.DataFrame, values: NDArray[np.float32]
) -> tuple[NDArray[np.str_], NDArray[np.float32]]:
    """Each compound's mean z-score profile (the drug-level baseline's vector)."""
    cp = (inst["pert_type"] == "trt_cp").to_numpy()
    ids, inverse = np.unique(inst.loc[cp, "pert_id"].astype(str).to_numpy(), return_inverse=True)
    sums = np.zeros((len(ids), values.shape[1]))
    np.add.at(sums, inverse, values[cp])
    return ids, (sums / np.bincount(inverse)[:, None]).astype(np.float32)


def _fingerprints(smiles: Sequence) -> NDArray[np.uint8]:
    from l1000_assets.core.structure.fingerprints import ecfp4

    return ecfp4(smiles).packed


_Pooled = dict[tuple[str, str, str], tuple[list[NDArray[np.float64]], int]]


def _add(pooled: _Pooled, key: tuple[str, str, str], q: NDArray[np.float64], n: int) -> None:
    parts, count = pooled.get(key, ([], 0))
    pooled[key] = ([*parts, q], count + n)


def _split_quantiles(
    inst: pd.DataFrame, values: NDArray[np.float32], pert_info: pd.DataFrame, pooled: _Pooled
) -> None:
    """Rank quantiles of every protocol on one split's treated held-out profiles ``inst`` /
    ``values`` (every profile of a perturbagen kept), added to ``pooled``."""
    pert_id = inst["pert_id"].astype(str).to_numpy()
    for metric in ("cosine", "euclidean"):
        result = _profile_retrieval(values, pert_id, metric)
        for group in GROUPS:
            mask = group_mask(inst["pert_type"], group)
            if mask.sum() >= 2:
                q = result.quantiles[mask[result.query_index]]
                _add(pooled, ("same_perturbagen", group, f"z-score {metric}"), q, int(mask.sum()))
    rep = _profile_retrieval(values, condition_labels(inst), "cosine")
    _add(pooled, ("replicates", "all", "z-score cosine"), rep.quantiles, rep.n_queries)

    ids, means = compound_means(inst, values)
    info = pert_info.drop_duplicates("pert_id").set_index("pert_id").reindex(ids)
    packed = _fingerprints(info["canonical_smiles"].tolist())
    for annotation in ("moa", "target"):
        sets = annotation_sets(info[annotation].tolist())
        for name, scores in (
            ("z-score cosine", cosine_scores(means)),
            ("ECFP4 Tanimoto", tanimoto_scores(packed)),
        ):
            result = drug_level_quantiles(scores, sets)
            _add(pooled, (annotation, "small molecules", name), result.quantiles, result.n_queries)


def _calibration(pooled: _Pooled) -> Calibration:
    rows = [
        CalibrationRow(
            protocol, group, method, RetrievalSummary.from_quantiles(np.concatenate(q), n)
        )
        for (protocol, group, method), (q, n) in pooled.items()
    ]
    summary = {(r.protocol, r.group, r.method): r.summary for r in rows}
    same = summary[("same_perturbagen", "all", "z-score cosine")]
    rep = summary[("replicates", "all", "z-score cosine")]
    figures = {
        "same_cosine_median_q": same["median_quantile"],
        "same_cosine_top_0.001": same["recall_top_0.001"],
        "same_cosine_top_0.01": same["recall_top_0.01"],
        "same_cosine_top_0.1": same["recall_top_0.1"],
        "same_cosine_auc": same["auc"],
        "same_euclidean_auc": summary[("same_perturbagen", "all", "z-score euclidean")]["auc"],
        "replicate_cosine_auc": rep["auc"],
        "replicate_cosine_top_0.01": rep["recall_top_0.01"],
    }
    for annotation in ("moa", "target"):
        for method, name in (("cosine", "z-score cosine"), ("tanimoto", "ECFP4 Tanimoto")):
            figures[f"{annotation}_{method}_auc"] = summary[(annotation, "small molecules", name)][
                "auc"
            ]
    return Calibration(figures, rows)


def calibrate_profiles(
    inst: pd.DataFrame,
    values: NDArray[np.float32],
    pert_info: pd.DataFrame,
    *,
    split_seeds: Sequence[int] = SPLIT_SEEDS,
) -> Calibration:
    """The figures of a release in memory: ``inst`` (its ``inst_info``, controls included),
    ``values`` (N x 978 level-4 landmark z-scores) and ``pert_info``; ranks pooled over the
    held-out perturbagens of each split seed, as the paper pools its splits."""
    inst, values = _treated(inst, values)
    pooled: _Pooled = {}
    for seed in split_seeds:
        held = _heldout(inst, seed)
        _split_quantiles(inst[held].reset_index(drop=True), values[held], pert_info, pooled)
    return _calibration(pooled)


def calibrate(config, *, split_seeds: Sequence[int] = SPLIT_SEEDS) -> Calibration:
    """Simulate ``config``'s landmark profiles in memory and compute every figure."""
    from l1000_assets.core.releases.synthetic import build_world, pert_info_table, simulate

    world, maps = build_world(config)
    inst, values = simulate(world, maps)
    return calibrate_profiles(inst, values, pert_info_table(world), split_seeds=split_seeds)


def release_calibration(
    level4: Path,
    inst: pd.DataFrame,
    pert_info: pd.DataFrame,
    landmark_ids: list[str],
    *,
    max_profiles: int = 20_000,
    split_seed: int = 0,
) -> Calibration:
    """The figures of a written release on one split, in bounded memory.

    The held-out perturbagens (whole perturbagens, so positives stay together) are
    subsampled to at most about ``max_profiles`` profiles, and only their columns are kept
    while the GCTX's landmark rows are streamed.
    """
    treated = inst[~inst["pert_type"].isin(CONTROL_PERT_TYPES)]
    held = heldout_perturbagens(treated["pert_id"], seed=split_seed)
    sizes = treated[treated["pert_id"].isin(held)].groupby("pert_id").size()
    order = np.random.default_rng(split_seed).permutation(sizes.index.to_numpy())
    n_keep = int(np.searchsorted(sizes.loc[order].cumsum().to_numpy(), max_profiles, "right"))
    keep_perts = order[: max(2, n_keep)]
    chosen = treated[treated["pert_id"].isin(keep_perts)]
    with GctxReader(level4) as reader:
        position = pd.Series(np.arange(len(reader.col_ids)), index=reader.col_ids)
        wanted = np.sort(position.loc[chosen["inst_id"].astype(str)].to_numpy())
        rows = reader.row_positions(landmark_ids)
        parts = []
        for block in reader.iter_blocks(rows):
            inside = wanted[(wanted >= block.start) & (wanted < block.stop)]
            if len(inside):
                parts.append(block.values[inside - block.start])
        col_ids = np.asarray(reader.col_ids)[wanted]
    values = np.concatenate(parts)
    ordered = inst.set_index("inst_id").loc[col_ids].reset_index()
    pooled: _Pooled = {}
    _split_quantiles(ordered, values, pert_info, pooled)
    return _calibration(pooled)


def figures_table(
    results: Mapping[str, Calibration], *, targets: Mapping[str, Target] = TARGETS
) -> str:
    """A markdown table: one row per figure, the paper's value, the band, and one column
    per release (``results``: column title -> calibration); out-of-band values starred."""
    names = list(results)
    lines = [
        "| figure | paper (real L1000) | band | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    for key, target in targets.items():
        band = f"{target.band[0]:.3f}-{target.band[1]:.3f}" if target.band else "reported"
        cells = []
        for name in names:
            v = results[name].figures.get(key, math.nan)
            outside = target.band is not None and not (target.band[0] <= v <= target.band[1])
            cells.append(f"{v:.3f}{' *' if outside else ''}")
        lines.append(f"| {target.label} | {target.paper} | {band} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_rows(rows: list[CalibrationRow]) -> str:
    """A markdown table of the rows, laid out like the paper's Table 1."""
    lines = [
        "| protocol | group | method | queries | positives | median q | top-0.001 | top-0.01 "
        "| top-0.1 | AUC |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r.summary
        figures = " | ".join(
            f"{s[m]:.3f}"
            for m in ("median_quantile", "recall_top_0.001", "recall_top_0.01", "recall_top_0.1")
        )
        lines.append(
            f"| {r.protocol} | {r.group} | {r.method} | {s.n_queries:,} | {s.n_positives:,} "
            f"| {figures} | {s['auc']:.3f} |"
        )
    return "\n".join(lines)
