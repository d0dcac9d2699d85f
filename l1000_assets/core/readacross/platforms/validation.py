"""Validation of the input kinds on a synthetic release's ground truth: for held-out
perturbagens of a split model, how often the true perturbagen (and another perturbagen of
its MOA) is among the top 10 reference perturbagens, and the AUC of the true one, for each
input kind and landmark coverage, beside level-4 L1000 queries of the same perturbagens.

:func:`validate` writes each rendering as the file a user would give (CSV counts matrix
and sample sheet, DE table, GCT plate) and reads it back through
:func:`~l1000_assets.core.readacross.platforms.inputs.read_platform_query`, so the table
measures the parsers too. ``benchmarks/platforms.py`` prints it. Synthetic: not biology.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.readacross.genes import GeneIndex
from l1000_assets.core.readacross.platforms import render
from l1000_assets.core.readacross.platforms import transforms as tf
from l1000_assets.core.readacross.platforms.inputs import (
    CONTROL_SPREADS,
    DE_VALUES,
    PlatformOptions,
    read_platform_query,
)
from l1000_assets.core.readacross.platforms.landmark_stats import LandmarkStats

COVERAGES = (978, 700, 500, 300)
TOP = 10


@dataclass(frozen=True)
class References:
    pert_ids: np.ndarray  # (n,)
    moa: np.ndarray  # (n,) object, None where unknown
    vectors: np.ndarray  # (n, d) unit rows


def retrieval(
    queries: np.ndarray, true_ids: Sequence[str], refs: References, top: int = TOP
) -> dict[str, float]:
    """Top-``top`` hit rate of the true perturbagen, of another perturbagen of its MOA
    (over queries whose MOA another reference shares), and the AUC of the true one
    (1 - its rank quantile among the other references, ties counting one half)."""
    sims = np.asarray(queries, np.float32) @ refs.vectors.T
    index = {p: i for i, p in enumerate(refs.pert_ids)}
    hits, moa_hits, aucs = [], [], []
    for row, pert in zip(sims, true_ids):
        i = index[pert]
        others = np.delete(row, i)
        aucs.append(1.0 - (np.sum(others > row[i]) + 0.5 * np.sum(others == row[i])) / len(others))
        order = np.argsort(-row, kind="stable")[:top]
        hits.append(i in order)
        moa = refs.moa[i]
        if moa and (refs.moa == moa).sum() > 1:
            moa_hits.append(any(refs.moa[j] == moa and j != i for j in order))
    return {
        "queries": len(aucs),
        "top10_perturbagen": float(np.mean(hits)),
        "moa_queries": len(moa_hits),
        "top10_moa": float(np.mean(moa_hits)) if moa_hits else float("nan"),
        "auc": float(np.mean(aucs)),
    }


def _landmark_labels(plates: render.RenderedPlates, genes: GeneIndex) -> np.ndarray:
    """Model input position of each of the first 978 rendered genes (the landmarks)."""
    return np.array([genes.position[g] for g in plates.gene_ids[:N_LANDMARKS]])


def validate(
    world,
    heldout: Sequence[str],
    genes: GeneIndex,
    stats: LandmarkStats,
    refs: References,
    embed: Callable[[np.ndarray], np.ndarray],
    workdir: str | Path,
    *,
    coverages: Sequence[int] = COVERAGES,
    variants: bool = True,
    seed: int = 0,
    log: Callable[[str], None] = lambda _: None,
) -> pd.DataFrame:
    """The retrieval table (one row per input kind, coverage and transform)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    plates = render.render_plates(world, list(heldout))
    wells = plates.wells
    positions = _landmark_labels(plates, genes)
    rows = []

    def add(kind: str, coverage: int, transform: str, values: np.ndarray, ids: Sequence[str]):
        result = retrieval(embed(values), ids, refs)
        rows.append({"input": kind, "landmarks": coverage, "transform": transform, **result})
        log(f"{kind} {coverage} {transform}: {result}")

    def read(path, platform, options=None, **kw):
        options = options or PlatformOptions()
        q = read_platform_query(path, platform, genes, stats=stats, options=options, **kw)
        return q.values, q.profile_ids

    # Level 4 of the same wells (plate population), the group mean of the replicates.
    groups = [g for g in pd.unique(wells["group"]) if g not in ("", "control")]
    level4 = np.zeros((len(groups), N_LANDMARKS))
    for i, g in enumerate(groups):
        level4[i, positions] = plates.level4[(wells["group"] == g).to_numpy()][
            :, :N_LANDMARKS
        ].mean(axis=0)
    counts, sheet = render.render_counts(plates, seed=seed)
    sheet_path = workdir / "samples.csv"
    sheet.to_csv(sheet_path, index=False)
    level3_sheet = wells.loc[wells["group"] != "", ["inst_id", "group", "batch"]].rename(
        columns={"inst_id": "sample"}
    )
    rng = np.random.default_rng([seed, 19])
    for coverage in coverages:
        measured_lm = (
            np.arange(N_LANDMARKS)
            if coverage >= N_LANDMARKS
            else np.sort(rng.choice(N_LANDMARKS, coverage, replace=False))
        )
        mask = np.zeros(N_LANDMARKS, bool)
        mask[positions[measured_lm]] = True
        add(
            "level-4 z-scores (L1000)",
            coverage,
            "as given" + ("" if mask.all() else ", imputed"),
            stats.impute(level4, mask),
            groups,
        )
        if coverage >= N_LANDMARKS:
            genes_rows = None
            labels, probes, library = plates.symbols, False, 20e6
            name = "rnaseq (whole transcriptome)"
        else:
            genes_rows = render.panel_genes(plates, coverage, seed=seed)
            genes_rows = np.sort(np.concatenate([measured_lm, genes_rows[coverage:]]))
            labels, probes, library = ([plates.symbols[i] for i in genes_rows], True, 3e6)
            name = "rnaseq (TempO-Seq panel)"
        c = (
            counts
            if genes_rows is None
            else render.render_counts(plates, seed=seed, genes=genes_rows, library_size=library)[0]
        )
        matrix = workdir / f"counts_{coverage}.csv"
        render.counts_table(c, sheet, labels, probes=probes, seed=seed).to_csv(matrix, index=False)
        transforms = [(tf.DEFAULT_COUNT_TRANSFORM, tf.DEFAULT_SCALE)]
        if variants and coverage >= N_LANDMARKS:
            transforms += [
                (t, sc) for t in tf.COUNT_TRANSFORMS for sc in tf.SCALES if (t, sc) != transforms[0]
            ]
        default_spread = PlatformOptions().control_spread
        spreads = [default_spread]
        if variants and coverage >= N_LANDMARKS:
            spreads += [s for s in CONTROL_SPREADS if s != default_spread]
        transforms = [(*transforms[0], s) for s in spreads] + [
            (t, sc, default_spread) for t, sc in transforms[1:]
        ]
        for count_transform, scale, spread in transforms:
            options = PlatformOptions(
                count_transform=count_transform, scale=scale, control_spread=spread
            )
            add(
                name,
                coverage,
                f"{count_transform}, scale {scale}, control MAD {spread}",
                *read(matrix, "rnaseq", options, samples=sheet_path),
            )
        de_ids = [
            plates.gene_ids[i]
            for i in (genes_rows if genes_rows is not None else range(len(plates.gene_ids)))
        ]
        de = workdir / f"de_{coverage}.csv"
        render.de_table(c, sheet, de_ids).to_csv(de, index=False)
        des = [("auto", tf.DEFAULT_SCALE)]
        if variants and coverage >= N_LANDMARKS:
            des += [(v, sc) for v in DE_VALUES for sc in tf.SCALES if (v, sc) != des[0]]
        for value, scale in des:
            options = PlatformOptions(de_value=value, scale=scale)
            add(
                "de (DESeq2-shaped table)",
                coverage,
                f"{value}, scale {scale}",
                *read(de, "de", options),
            )
        gct = workdir / f"level3_{coverage}.gct"
        _write_gct(gct, plates, measured_lm, wells)
        sheet3 = workdir / "level3_samples.csv"
        level3_sheet.to_csv(sheet3, index=False)
        for spread in spreads:
            add(
                "l1000-level3 (vs vehicle wells)",
                coverage,
                f"robust z vs controls, control MAD {spread}",
                *read(gct, "l1000-level3", PlatformOptions(control_spread=spread), samples=sheet3),
            )
    return pd.DataFrame(rows)


def _write_gct(path: Path, plates: render.RenderedPlates, rows: np.ndarray, wells) -> None:
    """The rendered level-3 landmark rows ``rows`` of the sheet's wells as GCT 1.3."""
    keep = (wells["group"] != "").to_numpy()
    x = plates.level3[keep][:, rows].T
    ids = wells.loc[keep, "inst_id"].tolist()
    gene_ids = [plates.gene_ids[i] for i in rows]
    with open(path, "w") as f:
        f.write("#1.3\n")
        f.write(f"{len(rows)}\t{len(ids)}\t1\t0\n")
        f.write("id\tpr_gene_symbol\t" + "\t".join(ids) + "\n")
        for gid, r, values in zip(gene_ids, rows, x):
            f.write(f"{gid}\t{plates.symbols[r]}\t" + "\t".join(f"{v:.4f}" for v in values) + "\n")
