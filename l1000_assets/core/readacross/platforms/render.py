"""Validation renderings: experiments of other platforms made from a synthetic release's
ground truth, for perturbagens a split model held out.

For chosen perturbagens and one cell line each, the release's own generator simulates
plates (vehicle and untreated controls on the same plates, three replicate plates) and
returns their **level-3** log2 expression for all 12,328 genes; the same wells' level-4
z-scores (against the plate population) are the L1000 queries of the same perturbagens.
From level 3:

* **RNA-seq**: negative-binomial counts over all genes, with a gene-specific baseline
  abundance, a per-gene platform bias (a constant log offset) and gain (the platform sees
  a gene's changes larger or smaller), library sizes that vary by sample, and a
  mean-dependent dispersion ``phi = 0.03 + 1 / mean``; a batch is one replicate plate
  with its vehicle controls;
* **targeted panels** (TempO-Seq style): the counts of a gene subset (a given number of the
  978 landmarks plus non-landmark genes), named by probe (``SYMBOL_<number>``; some genes
  with two probes that split the gene's counts), at a tenth of the library size;
* **DE tables**: per perturbagen against all vehicle controls, ``log2FoldChange`` of
  ``log2(CPM + 1)``, a Welch t ``stat``, ``pvalue`` and Benjamini-Hochberg ``padj``.

Everything is seeded; nothing here is biology (the release is synthetic).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from l1000_assets.core.lake.schema import N_LANDMARKS


@dataclass
class RenderedPlates:
    """Level-3 and level-4 values of rendered plates (wells in rows, 12,328 genes)."""

    wells: pd.DataFrame  # inst_id, pert_id, pert_type, batch, group (pert_id or control)
    level3: np.ndarray  # (wells, 12,328) log2
    level4: np.ndarray  # (wells, 12,328) robust z against each plate's population
    gene_ids: list[str]  # 12,328 Entrez ids, landmarks first (the generator's order)
    symbols: list[str]


def render_plates(world, pert_ids, *, dose_um: float = 10.0) -> RenderedPlates:
    """Plates of ``pert_ids`` (of ``world.perts``), each in its first cell line, compounds at
    ``dose_um`` and the later time point; three replicate plates per plate map."""
    from l1000_assets.core.releases.synthetic import _PlateMap, _plates, _robust_zscore

    cfg = world.config
    perts = world.perts.reset_index(drop=True)
    index = {p: i for i, p in enumerate(perts["pert_id"])}
    idx = np.array([index[p] for p in pert_ids])
    types = perts["pert_type"].to_numpy()[idx]
    cells = world.pert_cells[idx, 0]
    maps = []
    for kind, times in (("cp", cfg.compound_times_h), ("gen", cfg.genetic_times_h)):
        for c in np.unique(cells):
            sel = idx[(cells == c) & ((types == "trt_cp") == (kind == "cp"))]
            for part in np.array_split(sel, max(1, int(np.ceil(len(sel) / cfg.treatment_wells)))):
                if not len(part):
                    continue
                dose = np.where(
                    perts["pert_type"].to_numpy()[part] == "trt_cp",
                    dose_um,
                    np.where(perts["pert_type"].to_numpy()[part] == "trt_sh", 1.0, 2.0),
                )
                maps.append(
                    _PlateMap(f"VAL{len(maps) + 1:03d}", int(c), max(times), kind, part, dose)
                )
    frames, level3, level4 = [], [], []
    for plate in _plates(world, maps, limit=10**9, level=3):
        inst = plate.inst.copy()
        inst["batch"] = inst["inst_id"].str.split(":").str[0]
        inst["group"] = np.where(inst["pert_type"].str.startswith("trt"), inst["pert_id"], "")
        inst.loc[inst["pert_type"].isin(["ctl_vehicle", "ctl_vector"]), "group"] = "control"
        frames.append(inst)
        level3.append(plate.level4)
        level4.append(_robust_zscore(plate.level4, cfg.mad_floor))
    genes = world.genes
    return RenderedPlates(
        pd.concat(frames, ignore_index=True),
        np.concatenate(level3),
        np.concatenate(level4),
        genes["pr_gene_id"].astype(str).tolist(),
        genes["pr_gene_symbol"].astype(str).tolist(),
    )


def render_counts(
    plates: RenderedPlates,
    *,
    seed: int = 0,
    library_size: float = 20e6,
    genes: np.ndarray | None = None,
    deviation_sd: float = 0.5,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Negative-binomial counts (genes x samples, int64) of the vehicle-control and treated
    wells, over ``genes`` (row indices into the 12,328; all when None), and their sample
    sheet (``sample``, ``group``, ``batch``). A gene's deviation from its plate's vehicle
    controls, in units of its plate-population spread (the level-4 scale), becomes
    ``deviation_sd`` log2 units of expression (the generator's level 3 is not in realistic
    log2 units; its z-scores are calibrated)."""
    rng = np.random.default_rng([seed, 16])
    wells = plates.wells
    keep = (wells["group"] != "").to_numpy()
    x = plates.level3[keep].astype(np.float64)
    sheet = wells.loc[keep, ["inst_id", "group", "batch"]].rename(columns={"inst_id": "sample"})
    n_genes = x.shape[1]
    base = rng.normal(3.0, 2.5, n_genes)  # log2 CPM of each gene's baseline abundance
    bias = rng.normal(0.0, 0.5, n_genes)  # the platform's per-gene log offset
    gain = np.exp(rng.normal(0.0, 0.2, n_genes))  # and per-gene sensitivity to changes
    controls = (sheet["group"] == "control").to_numpy()
    dev = np.empty_like(x)
    for b in sheet["batch"].unique():
        rows = (sheet["batch"] == b).to_numpy()
        dev[rows] = x[rows] - x[rows & controls].mean(axis=0)
    # In units of each gene's spread over every rendered well (about the level-4 scale).
    dev /= np.maximum(1.4826 * np.median(np.abs(dev - np.median(dev, axis=0)), axis=0), 1e-3)
    log2 = base + bias + gain * deviation_sd * dev
    if genes is not None:
        log2 = log2[:, genes]
    share = 2.0**log2
    share /= share.sum(axis=1, keepdims=True)
    libs = library_size * np.exp(rng.normal(0.0, 0.3, len(share)))
    mean = share * libs[:, None]
    phi = 0.03 + 1.0 / np.maximum(mean, 1e-3)
    shape = 1.0 / phi
    counts = rng.poisson(rng.gamma(shape, mean / shape))
    return counts.T.astype(np.int64), sheet.reset_index(drop=True)


def panel_genes(
    plates: RenderedPlates, n_landmarks: int, *, n_other: int = 1500, seed: int = 0
) -> np.ndarray:
    """Row indices of a targeted panel: ``n_landmarks`` of the 978 landmarks (seeded) and
    ``n_other`` other genes."""
    rng = np.random.default_rng([seed, 17, n_landmarks])
    lm = np.sort(rng.choice(N_LANDMARKS, n_landmarks, replace=False))
    n_all = len(plates.gene_ids)
    other = np.sort(rng.choice(np.arange(N_LANDMARKS, n_all), n_other, replace=False))
    return np.concatenate([lm, other])


def counts_table(
    counts: np.ndarray,
    sheet: pd.DataFrame,
    labels: list[str],
    *,
    probes: bool = False,
    seed: int = 0,
) -> pd.DataFrame:
    """A counts matrix as a table (``gene`` column, one column per sample). With ``probes``
    the genes are TempO-Seq probes ``SYMBOL_<n>``; every fifth gene has two probes that
    split its counts."""
    if not probes:
        return pd.concat(
            [pd.DataFrame({"gene": labels}), pd.DataFrame(counts, columns=sheet["sample"])],
            axis=1,
        )
    rng = np.random.default_rng([seed, 18])
    names, rows = [], []
    for i, symbol in enumerate(labels):
        if i % 5 == 0:
            first = rng.binomial(counts[i], 0.6)
            rows += [first, counts[i] - first]
            names += [f"{symbol}_{10000 + 2 * i}", f"{symbol}_{10001 + 2 * i}"]
        else:
            rows.append(counts[i])
            names.append(f"{symbol}_{10000 + 2 * i}")
    return pd.concat(
        [pd.DataFrame({"gene": names}), pd.DataFrame(np.stack(rows), columns=sheet["sample"])],
        axis=1,
    )


def de_table(counts: np.ndarray, sheet: pd.DataFrame, gene_ids: list[str]) -> pd.DataFrame:
    """A DESeq2-shaped table of every treated group against all vehicle controls:
    ``contrast``, ``gene``, ``log2FoldChange``, ``stat``, ``pvalue``, ``padj``."""
    from scipy.stats import t as student_t

    cpm = counts / counts.sum(axis=0, keepdims=True) * 1e6
    logx = np.log2(cpm + 1.0)
    controls = (sheet["group"] == "control").to_numpy()
    c = logx[:, controls]
    frames = []
    for group in pd.unique(sheet.loc[~controls, "group"]):
        t_ = logx[:, (sheet["group"] == group).to_numpy()]
        lfc = t_.mean(axis=1) - c.mean(axis=1)
        va, vb = t_.var(axis=1, ddof=1) / t_.shape[1], c.var(axis=1, ddof=1) / c.shape[1]
        se = np.sqrt(np.maximum(va + vb, 1e-6))
        dof = np.maximum(
            (va + vb) ** 2 / (va**2 / (t_.shape[1] - 1) + vb**2 / (c.shape[1] - 1) + 1e-12), 1.0
        )
        stat = lfc / se
        p = 2 * student_t.sf(np.abs(stat), dof)
        order = np.argsort(p)
        ranked = p[order] * len(p) / np.arange(1, len(p) + 1)
        padj = np.empty_like(p)
        padj[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
        frames.append(
            pd.DataFrame(
                {
                    "contrast": group,
                    "gene": gene_ids,
                    "log2FoldChange": lfc.round(5),
                    "stat": stat.round(4),
                    "pvalue": p,
                    "padj": padj,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def write_examples(world, pert_ids, out_dir: str | Path) -> dict[str, Path]:
    """Example query files of every input kind for ``pert_ids`` of a synthetic ``world``
    (the demo writes them under ``<data root>/examples/``): ``rnaseq_counts.csv`` and
    ``rnaseq_samples.csv`` (whole transcriptome, symbols), ``tempo_seq_panel.csv`` (500
    landmarks and 1,500 other genes by probe, same samples), ``de_table.tsv`` (one contrast
    per perturbagen, Entrez ids), ``level3_plate.gct`` and ``level3_samples.csv`` (the
    landmark rows of the plates' level 3), ``zscores.csv`` (level-4 group means by symbol).
    Synthetic: simulated values, not biology."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plates = render_plates(world, list(pert_ids))
    counts, sheet = render_counts(plates)
    files = {
        "rnaseq_counts": out / "rnaseq_counts.csv",
        "rnaseq_samples": out / "rnaseq_samples.csv",
        "tempo_seq_panel": out / "tempo_seq_panel.csv",
        "de_table": out / "de_table.tsv",
        "level3_plate": out / "level3_plate.gct",
        "level3_samples": out / "level3_samples.csv",
        "zscores": out / "zscores.csv",
    }
    counts_table(counts, sheet, plates.symbols).to_csv(files["rnaseq_counts"], index=False)
    sheet.to_csv(files["rnaseq_samples"], index=False)
    rows = panel_genes(plates, 500)
    panel, _ = render_counts(plates, genes=rows, library_size=3e6)
    counts_table(panel, sheet, [plates.symbols[i] for i in rows], probes=True).to_csv(
        files["tempo_seq_panel"], index=False
    )
    de_table(counts, sheet, plates.gene_ids).to_csv(files["de_table"], sep="\t", index=False)
    keep = (plates.wells["group"] != "").to_numpy()
    wells = plates.wells[keep]
    x = plates.level3[keep][:, :N_LANDMARKS]
    with open(files["level3_plate"], "w") as f:
        f.write(f"#1.3\n{N_LANDMARKS}\t{len(wells)}\t1\t0\n")
        f.write("id\tpr_gene_symbol\t" + "\t".join(wells["inst_id"]) + "\n")
        for r in range(N_LANDMARKS):
            values = "\t".join(f"{v:.4f}" for v in x[:, r])
            f.write(f"{plates.gene_ids[r]}\t{plates.symbols[r]}\t{values}\n")
    wells[["inst_id", "group", "batch"]].rename(columns={"inst_id": "sample"}).to_csv(
        files["level3_samples"], index=False
    )
    groups = [g for g in pd.unique(wells["group"]) if g != "control"]
    z = {
        g: plates.level4[(plates.wells["group"] == g).to_numpy()][:, :N_LANDMARKS].mean(axis=0)
        for g in groups
    }
    pd.DataFrame({"gene": plates.symbols[:N_LANDMARKS], **z}).round(4).to_csv(
        files["zscores"], index=False
    )
    return files
