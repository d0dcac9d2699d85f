"""The embedded synthetic LINCS release: GEO GSE92742 layout, known ground truth.

:func:`write_synthetic_release` writes a level-4 GCTX
(``..._Level4_ZSPCINF_mlr12k_n{N}x12328.gctx``) and the GEO metadata tables (``inst_info``,
``gene_info``, ``pert_info``, ``cell_info``) for a simulated L1000 experiment, streamed plate
by plate so memory does not grow with ``N``.

The generative model (why each part is there is in ``science.md`` section 6):

* **Genes.** 12,328 genes, the first 978 landmarks (as in the GEO files). The 11,350
  non-landmarks are noisy linear (low-rank) combinations of the landmarks' level-3 values,
  as CMap's inference model makes them.
* **Shared gene programs.** Perturbagen effects live in ``n_programs`` shared programs.
  Each target gene has a response vector built from the programs of its pathway; a
  compound MOA is "inhibitor/agonist of a target"; shRNA (several hairpins per gene) and
  cDNA act on the same targets with opposite signs and large seed/off-target deviations.
  Each perturbagen adds its own deviation, partly in program space, partly gene-level.
  Some perturbagens are near-inert.
* **Cell lines.** Each cell line re-weights and mixes the programs (a fixed linear map per
  line), scales the response, and adds a perturbagen x cell-line idiosyncratic part.
* **Dose and time.** Hill dose-response with a per-compound EC50; a secondary response
  direction that grows with time.
* **Plates.** A plate holds one cell line at one time point: treatment wells of a plate map
  plus vehicle/vector and untreated controls, replicated on ``replicates`` plates. Level 3
  is simulated per well; level 4 is the per-plate robust z-score
  ``(x - median) / (1.4826 * MAD)`` over the plate population, as CMap computes it.
  Plates carry non-additive batch effects (per-plate gene gains and program amplitudes,
  a position gradient), which the robust z-score does not remove.
* **Noise.** A few dominant programs with large random per-well amplitudes (structured
  noise shared by all profiles), heavy-tailed Student-t well noise with a per-well
  quality scale.

Everything is drawn from ``numpy.random.Generator`` streams keyed by ``(seed, purpose,
index)``, so the same seed gives the same values regardless of block sizes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from l1000_assets.core.atomic import atomic_dir
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.gctx import GctxWriter
from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.progress import Progress

N_GENES = 12_328
WELL_ROWS = "ABCDEFGHIJKLMNOP"  # 16 x 24 = 384 wells
WELLS_PER_PLATE = 384
PREFIX = "SYNTH_Broad_LINCS"
MANIFEST_NAME = "synthetic_release.json"

CELL_LINES = (
    ("A375", "skin", "malignant melanoma"),
    ("A549", "lung", "non-small cell lung carcinoma"),
    ("HA1E", "kidney", "immortalized normal kidney epithelium"),
    ("HT29", "large intestine", "colorectal adenocarcinoma"),
    ("MCF7", "breast", "breast adenocarcinoma"),
    ("PC3", "prostate", "prostate adenocarcinoma"),
    ("VCAP", "prostate", "prostate carcinoma"),
    ("SK-N-SH", "central nervous system", "neuroblastoma"),
    ("HEPG2", "liver", "hepatocellular carcinoma"),
    ("HCC515", "lung", "non-small cell lung carcinoma"),
    ("NCI-H716", "large intestine", "colorectal adenocarcinoma"),
    ("NPC", "central nervous system", "neural progenitor cell"),
)

INST_COLUMNS = [
    "inst_id",
    "rna_plate",
    "rna_well",
    "pert_id",
    "pert_iname",
    "pert_type",
    "pert_dose",
    "pert_dose_unit",
    "pert_time",
    "pert_time_unit",
    "cell_id",
]
GENE_COLUMNS = ["pr_gene_id", "pr_gene_symbol", "pr_gene_title", "pr_is_lm", "pr_is_bing"]
PERT_COLUMNS = [
    "pert_id",
    "canonical_smiles",
    "inchi_key",
    "pert_iname",
    "pert_type",
    "moa",
    "target",
]
CELL_COLUMNS = [
    "cell_id",
    "cell_type",
    "base_cell_id",
    "precursor_cell_id",
    "modification",
    "sample_type",
    "primary_site",
    "subtype",
    "original_growth_pattern",
    "donor_sex",
]

# Purposes of the random streams: one integer each, so streams never collide.
_GLOBAL, _PERT, _CELL, _MAP, _PLATE, _PAIR = range(6)


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic release. Defaults are calibrated (see the README).

    The number of perturbagens follows from ``n_profiles`` and the design (cell lines per
    perturbagen x doses x times x replicates), like a real screen: about 30 profiles each.
    """

    n_profiles: int = 36_000
    seed: int = 0
    n_cell_lines: int = 8
    cells_per_perturbagen: int = 3
    replicates: int = 3
    compound_doses_um: tuple[float, ...] = (1.11, 10.0)
    compound_times_h: tuple[int, ...] = (6, 24)
    genetic_times_h: tuple[int, ...] = (96, 144)
    fraction_compound: float = 0.7
    fraction_shrna: float = 0.2  # the rest are cDNA (trt_oe)
    compounds_per_moa: int = 10
    hairpins_per_gene: int = 3
    inert_fraction: float = 0.2
    n_programs: int = 40
    programs_per_pathway: int = 3
    # Effect structure (relative weights of the parts of a perturbagen's direction).
    moa_weight: float = 1.0
    own_program_weight: float = 0.6
    own_gene_weight: float = 0.45
    shrna_seed_weight: float = 0.9
    secondary_angle_early: float = 0.3
    secondary_angle_late: float = 0.8
    cell_mixing: float = 0.4
    cell_program_gain_sd: float = 0.5
    pert_cell_weight: float = 0.35
    # Amplitudes, in log2-expression units of level 3.
    effect_scale: float = 2.2
    potency_sd: float = 0.5
    target_knockdown: float = 2.0
    n_noise_programs: int = 5
    noise_program_sd: float = 1.0
    well_noise_sd: float = 0.3
    well_noise_df: float = 3.0
    well_quality_sd: float = 0.25
    plate_gain_sd: float = 0.15
    plate_program_sd: float = 0.3
    plate_gradient_sd: float = 0.2
    inference_rank: int = 50
    inference_noise_sd: float = 0.3
    controls_vehicle: int = 16
    controls_untreated: int = 8
    mad_floor: float = 0.05
    chunks: tuple[int, int] = (1000, 1000)

    def __post_init__(self) -> None:
        if self.n_profiles < 1:
            raise ValueError("n_profiles must be at least 1")
        if not 1 <= self.n_cell_lines:
            raise ValueError("n_cell_lines must be at least 1")
        if not 1 <= self.cells_per_perturbagen <= self.n_cell_lines:
            raise ValueError("cells_per_perturbagen must be between 1 and n_cell_lines")
        if self.controls_vehicle + self.controls_untreated >= WELLS_PER_PLATE:
            raise ValueError("too many control wells for a 384-well plate")

    @property
    def treatment_wells(self) -> int:
        return WELLS_PER_PLATE - self.controls_vehicle - self.controls_untreated

    def controls(self, n_treatment: int) -> tuple[int, int]:
        """Vehicle/vector and untreated wells of a plate with ``n_treatment`` treatments.

        A full plate gets the configured counts; a partly filled one proportionally fewer
        (at least 4 and 2), so controls stay about 6% of profiles, as in real releases.
        """
        scale = n_treatment / self.treatment_wells
        return (
            max(4, round(self.controls_vehicle * scale)),
            max(2, round(self.controls_untreated * scale)),
        )


@dataclass(frozen=True)
class ReleaseFiles:
    """Paths of one release in GEO layout."""

    root: Path
    level4: Path
    inst_info: Path
    gene_info: Path
    pert_info: Path
    cell_info: Path
    manifest: Path

    @classmethod
    def for_release(cls, root: str | Path, n_profiles: int, prefix: str = PREFIX) -> ReleaseFiles:
        root = Path(root)
        return cls(
            root=root,
            level4=root / f"{prefix}_Level4_ZSPCINF_mlr12k_n{n_profiles}x{N_GENES}.gctx",
            inst_info=root / f"{prefix}_inst_info.txt",
            gene_info=root / f"{prefix}_gene_info.txt",
            pert_info=root / f"{prefix}_pert_info.txt",
            cell_info=root / f"{prefix}_cell_info.txt",
            manifest=root / MANIFEST_NAME,
        )


def _rng(seed: int, purpose: int, *index: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, *index])


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------
# The world: genes, programs, cell lines, perturbagens (all small: O(perturbagens))
# --------------------------------------------------------------------------------------
@dataclass
class _World:
    config: SyntheticConfig
    genes: pd.DataFrame
    programs: np.ndarray  # (K, 978) orthonormal rows
    noise_programs: np.ndarray  # (K_s, 978), unit rows
    noise_sds: np.ndarray  # (K_s,)
    inference_a: np.ndarray  # (978, r)
    inference_c: np.ndarray  # (r, 11350)
    cells: pd.DataFrame
    perts: pd.DataFrame  # one row per treatment perturbagen
    pert_program: np.ndarray  # (P, K) own program-space deviation
    pert_secondary: np.ndarray  # (P, K) time-dependent secondary direction
    target_response: np.ndarray  # (T, 978) unit response vectors of the targets
    cell_baseline_sd: float = 1.5
    extra: dict = field(default_factory=dict)


PLATFORM_SEED = 12_328


def _make_genes(rng: np.random.Generator) -> pd.DataFrame:
    """The platform's genes: the same ids for every seed (every L1000 release measures the
    same 978 landmarks, so releases of different seeds can share one lake and one model).

    ``rng`` is advanced exactly as before gene ids were fixed, so every other value a
    seed produces is unchanged."""
    rng.choice(np.arange(1, 150_000), size=N_GENES, replace=False)
    rng.choice(N_GENES - N_LANDMARKS, 9_196, replace=False)
    platform = np.random.default_rng(PLATFORM_SEED)
    ids = platform.choice(np.arange(1, 150_000), size=N_GENES, replace=False)
    # Landmarks in ascending gene id, the lake's canonical order (GEO's own order is arbitrary).
    ids[:N_LANDMARKS] = np.sort(ids[:N_LANDMARKS])
    is_lm = np.zeros(N_GENES, dtype=int)
    is_lm[:N_LANDMARKS] = 1
    is_bing = is_lm.copy()
    is_bing[N_LANDMARKS + platform.choice(N_GENES - N_LANDMARKS, 9_196, replace=False)] = 1
    return pd.DataFrame(
        {
            "pr_gene_id": ids.astype(str),
            "pr_gene_symbol": [f"G{i}" for i in ids],
            "pr_gene_title": [
                ("synthetic landmark gene " if lm else "synthetic inferred gene ") + str(i)
                for i, lm in zip(ids, is_lm)
            ],
            "pr_is_lm": is_lm,
            "pr_is_bing": is_bing,
        }
    )


def _sparse_programs(rng: np.random.Generator, k: int, density: float) -> np.ndarray:
    raw = rng.standard_normal((k, N_LANDMARKS)) * (rng.random((k, N_LANDMARKS)) < density)
    raw += 0.1 * rng.standard_normal((k, N_LANDMARKS))
    return raw


def _make_cells(cfg: SyntheticConfig) -> pd.DataFrame:
    rows = []
    for j in range(cfg.n_cell_lines):
        if j < len(CELL_LINES):
            name, site, subtype = CELL_LINES[j]
        else:
            name, site, subtype = f"SYN-C{j:03d}", "-666", "-666"
        rows.append(
            {
                "cell_id": name,
                "cell_type": "cell line",
                "base_cell_id": name,
                "precursor_cell_id": "-666",
                "modification": "-666",
                "sample_type": "tumor",
                "primary_site": site,
                "subtype": subtype,
                "original_growth_pattern": "adherent",
                "donor_sex": "-666",
            }
        )
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def _count_perturbagens(cfg: SyntheticConfig) -> tuple[int, int, int]:
    """Compounds, shRNAs and cDNAs so that the design slightly exceeds ``n_profiles``."""
    per_cp = cfg.cells_per_perturbagen * len(cfg.compound_doses_um) * len(cfg.compound_times_h)
    per_gen = cfg.cells_per_perturbagen * len(cfg.genetic_times_h)
    per_cp *= cfg.replicates
    per_gen *= cfg.replicates
    frac_gen = 1.0 - cfg.fraction_compound
    mean_profiles = cfg.fraction_compound * per_cp + frac_gen * per_gen
    treat = cfg.n_profiles * cfg.treatment_wells / WELLS_PER_PLATE
    n = max(4, math.ceil(1.05 * treat / mean_profiles) + 2)
    n_cp = max(2, round(n * cfg.fraction_compound))
    n_sh = max(1, round(n * cfg.fraction_shrna))
    n_oe = max(1, n - n_cp - n_sh)
    return n_cp, n_sh, n_oe


def _build_world(cfg: SyntheticConfig, scale: float = 1.0) -> _World:
    rng = _rng(cfg.seed, _GLOBAL)
    genes = _make_genes(rng)
    k = cfg.n_programs
    programs = np.linalg.qr(_sparse_programs(rng, k, 0.15).T)[0].T  # orthonormal rows
    noise_programs = _unit_rows(_sparse_programs(rng, cfg.n_noise_programs, 0.5))
    noise_sds = cfg.noise_program_sd * np.geomspace(1.5, 0.6, cfg.n_noise_programs)
    r = cfg.inference_rank
    inference_a = rng.standard_normal((N_LANDMARKS, r)) / math.sqrt(N_LANDMARKS)
    inference_c = rng.standard_normal((r, N_GENES - N_LANDMARKS)) / math.sqrt(r)

    n_cp, n_sh, n_oe = (int(math.ceil(x * scale)) for x in _count_perturbagens(cfg))
    n_moa = max(2, math.ceil(n_cp / cfg.compounds_per_moa))
    n_gen_targets = max(1, math.ceil(n_sh / cfg.hairpins_per_gene))
    n_targets = min(N_LANDMARKS, n_moa + n_gen_targets)
    target_genes = rng.choice(N_LANDMARKS, size=n_targets, replace=False)
    n_pathways = max(2, n_targets // 5)
    pathway_coef = np.zeros((n_pathways, k))
    for p in range(n_pathways):
        chosen = rng.choice(k, size=min(cfg.programs_per_pathway, k), replace=False)
        pathway_coef[p, chosen] = rng.standard_normal(len(chosen)) + np.sign(
            rng.standard_normal(len(chosen))
        )
    target_pathway = rng.integers(0, n_pathways, n_targets)
    target_coef = pathway_coef[target_pathway] + 0.5 * rng.standard_normal((n_targets, k))
    target_response = _unit_rows(target_coef @ programs)

    symbols = genes["pr_gene_symbol"].to_numpy()
    # MOAs: a target and a direction; genetic perturbagens reuse targets (mostly those of MOAs).
    moa_target = (
        rng.permutation(n_targets)[:n_moa]
        if n_moa <= n_targets
        else rng.integers(0, n_targets, n_moa)
    )
    moa_sign = np.where(rng.random(n_moa) < 0.8, -1.0, 1.0)
    moa_name = [
        f"{symbols[target_genes[t]]} {'inhibitor' if s < 0 else 'agonist'}"
        for t, s in zip(moa_target, moa_sign)
    ]

    rows = []
    for i in range(n_cp):
        m = i % n_moa
        rows.append(
            (
                "trt_cp",
                f"BRD-K{10_000_000 + i * 7919 % 90_000_000:08d}",
                f"synth-{i:05d}",
                int(moa_target[m]),
                float(moa_sign[m]),
                moa_name[m],
            )
        )
    sh_targets = rng.integers(0, n_targets, n_gen_targets)
    for i in range(n_sh):
        t = int(sh_targets[i // cfg.hairpins_per_gene])
        rows.append(
            ("trt_sh", f"TRCN{1_000_000_000 + i:010d}", symbols[target_genes[t]], t, -1.0, "-666")
        )
    for i in range(n_oe):
        t = int(rng.integers(0, n_targets))
        rows.append(("trt_oe", f"ccsbBroad304_{i:05d}", symbols[target_genes[t]], t, 1.0, "-666"))
    perts = pd.DataFrame(
        rows, columns=["pert_type", "pert_id", "pert_iname", "target_index", "sign", "moa"]
    )
    perts["target_gene"] = target_genes[perts["target_index"].to_numpy()]
    perts["target"] = symbols[perts["target_gene"].to_numpy()]
    n_p = len(perts)
    inert_p = np.where(perts["pert_type"] == "trt_cp", cfg.inert_fraction, cfg.inert_fraction / 2)
    perts["potency"] = np.exp(cfg.potency_sd * rng.standard_normal(n_p)) * np.where(
        rng.random(n_p) < inert_p, 0.08, 1.0
    )
    perts["ec50_um"] = 10 ** (0.7 * rng.standard_normal(n_p))
    pert_cells = np.stack(
        [rng.choice(cfg.n_cell_lines, cfg.cells_per_perturbagen, replace=False) for _ in range(n_p)]
    )
    world = _World(
        config=cfg,
        genes=genes,
        programs=programs.astype(np.float32),
        noise_programs=noise_programs.astype(np.float32),
        noise_sds=noise_sds,
        inference_a=inference_a.astype(np.float32),
        inference_c=inference_c.astype(np.float32),
        cells=_make_cells(cfg),
        perts=perts,
        pert_program=rng.standard_normal((n_p, k)).astype(np.float32),
        pert_secondary=rng.standard_normal((n_p, k)).astype(np.float32),
        target_response=target_response.astype(np.float32),
    )
    world.extra["pert_cells"] = pert_cells
    # Well-inferred ("BING") genes get the configured noise, the rest three times as much.
    bing = genes["pr_is_bing"].to_numpy()[N_LANDMARKS:] == 1
    world.extra["inference_noise_sd"] = (cfg.inference_noise_sd * np.where(bing, 1.0, 3.0)).astype(
        np.float32
    )
    return world


def _cell_transform(world: _World, c: int) -> tuple[np.ndarray, float]:
    """Cell line ``c``'s linear map on effects (978 x 978) and its responsiveness."""
    cfg = world.config
    rng = _rng(cfg.seed, _CELL, c)
    k = cfg.n_programs
    rotation = np.linalg.qr(rng.standard_normal((k, k)))[0]
    gain = np.exp(cfg.cell_program_gain_sd * rng.standard_normal(k))
    inner = ((1 - cfg.cell_mixing) * np.eye(k) + cfg.cell_mixing * rotation) * gain[None, :]
    b = world.programs.astype(np.float64)
    t = b.T @ inner @ b + (np.eye(N_LANDMARKS) - b.T @ b)
    responsiveness = float(np.exp(0.3 * rng.standard_normal()))
    return t.astype(np.float32), responsiveness


def _pert_directions(world: _World, pert_idx: np.ndarray, early: bool) -> np.ndarray:
    """Unit effect directions (n x 978) of perturbagens at an early or late time point."""
    cfg = world.config
    p = world.perts
    b = world.programs
    sign = p["sign"].to_numpy()[pert_idx, None].astype(np.float32)
    target = world.target_response[p["target_index"].to_numpy()[pert_idx]]
    is_sh = (p["pert_type"].to_numpy()[pert_idx] == "trt_sh")[:, None]
    own_prog = _unit_rows(world.pert_program[pert_idx] @ b)
    own_gene = np.stack(
        [_rng(cfg.seed, _PERT, int(i)).standard_normal(N_LANDMARKS) for i in pert_idx]
    ).astype(np.float32) / math.sqrt(N_LANDMARKS)
    own_w = np.where(is_sh, cfg.shrna_seed_weight, cfg.own_program_weight)
    primary = _unit_rows(
        cfg.moa_weight * sign * target + own_w * own_prog + cfg.own_gene_weight * own_gene
    )
    secondary = _unit_rows(world.pert_secondary[pert_idx] @ b)
    angle = cfg.secondary_angle_early if early else cfg.secondary_angle_late
    return math.cos(angle) * primary + math.sin(angle) * secondary


# --------------------------------------------------------------------------------------
# The design: plate groups (cell line x time x kind), plate maps, replicate plates
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PlateMap:
    map_id: str
    cell: int
    time_h: int
    kind: str  # "cp" or "gen"
    pert_idx: np.ndarray  # treatment wells
    dose: np.ndarray


def _design(world: _World) -> list[_PlateMap]:
    cfg = world.config
    perts = world.perts
    pert_cells = world.extra["pert_cells"]
    rng = _rng(cfg.seed, _MAP)
    maps = []
    types = perts["pert_type"].to_numpy()
    for kind, times in (("cp", cfg.compound_times_h), ("gen", cfg.genetic_times_h)):
        kind_mask = (types == "trt_cp") if kind == "cp" else (types != "trt_cp")
        for c in range(cfg.n_cell_lines):
            in_cell = np.nonzero(kind_mask & (pert_cells == c).any(axis=1))[0]
            if len(in_cell) == 0:
                continue
            for t in times:
                if kind == "cp":
                    doses = np.asarray(cfg.compound_doses_um)
                    idx = np.repeat(in_cell, len(doses))
                    dose = np.tile(doses, len(in_cell))
                else:
                    idx = in_cell
                    dose = np.where(types[in_cell] == "trt_sh", 1.0, 2.0)
                order = rng.permutation(len(idx))
                n_maps = math.ceil(len(idx) / cfg.treatment_wells)
                for part in np.array_split(order, n_maps):
                    # Another seed is another release: its plates (and so its inst_ids)
                    # must not collide with seed 0's when both are in one lake.
                    tag = f"S{cfg.seed}" if cfg.seed else ""
                    map_id = f"SYN{tag}{kind.upper()}{len(maps) + 1:04d}"
                    maps.append(_PlateMap(map_id, c, int(t), kind, idx[part], dose[part]))
    # Plates come out in a shuffled order, so truncating the design at n_profiles drops
    # random plate maps rather than a whole cell line or perturbagen type.
    return [maps[i] for i in rng.permutation(len(maps))]


def _well_names(n: int) -> list[str]:
    return [f"{WELL_ROWS[i % 16]}{i // 16 + 1:02d}" for i in range(n)]


def _robust_zscore(x: np.ndarray, mad_floor: float) -> np.ndarray:
    """Per-gene robust z-score against the plate population (rows = wells)."""
    med = np.median(x, axis=0)
    dev = np.abs(x - med)
    mad = np.maximum(np.median(dev, axis=0) * 1.4826, mad_floor)
    return ((x - med) / mad).astype(np.float32)


@dataclass
class _Plate:
    inst: pd.DataFrame
    level4: np.ndarray  # wells x 12,328


def _plates(
    world: _World, maps: list[_PlateMap], limit: int, landmarks_only: bool = False
) -> Iterator[_Plate]:
    """Simulate plates in design order until ``limit`` wells have been produced.

    With ``landmarks_only`` the inferred genes are skipped; landmark values are identical.
    """
    cfg = world.config
    perts = world.perts
    cells = world.cells["cell_id"].to_numpy()
    lm_n = N_LANDMARKS
    produced = 0
    cell_cache: dict[int, tuple[np.ndarray, float, np.ndarray]] = {}
    for m_i, pmap in enumerate(maps):
        if produced >= limit:
            return
        if pmap.cell not in cell_cache:
            t, resp = _cell_transform(world, pmap.cell)
            baseline = 8.0 + world.cell_baseline_sd * _rng(
                cfg.seed, _CELL, pmap.cell, 1
            ).standard_normal(lm_n).astype(np.float32)
            cell_cache[pmap.cell] = (t, resp, baseline)
        transform, resp, baseline = cell_cache[pmap.cell]
        early = pmap.time_h in (min(cfg.compound_times_h), min(cfg.genetic_times_h))
        time_amp = 0.7 if early else 1.0
        # Signal of each treatment well (identical on the replicate plates of this map).
        pidx = pmap.pert_idx
        directions = _pert_directions(world, pidx, early) @ transform.T
        pair = np.stack(
            [_rng(cfg.seed, _PAIR, int(p), pmap.cell).standard_normal(lm_n) for p in pidx]
        ).astype(np.float32) / math.sqrt(lm_n)
        directions = _unit_rows(directions) + cfg.pert_cell_weight * pair
        ec50 = perts["ec50_um"].to_numpy()[pidx]
        is_cp = perts["pert_type"].to_numpy()[pidx] == "trt_cp"
        hill = np.where(is_cp, pmap.dose / (pmap.dose + ec50), 0.8)
        amp = cfg.effect_scale * resp * time_amp * hill * perts["potency"].to_numpy()[pidx]
        signal = (amp[:, None] * directions * math.sqrt(lm_n)).astype(np.float32)
        # Genetic perturbagens move their own target gene strongly.
        tg = perts["target_gene"].to_numpy()[pidx]
        gen = ~is_cp
        signal[np.nonzero(gen)[0], tg[gen]] += (
            perts["sign"].to_numpy()[pidx][gen]
            * cfg.target_knockdown
            * perts["potency"].to_numpy()[pidx][gen]
        )

        n_ctl = sum(cfg.controls(len(pidx)))
        n_w = len(pidx) + n_ctl
        for rep in range(1, cfg.replicates + 1):
            if produced >= limit:
                return
            rng = _rng(cfg.seed, _PLATE, m_i, rep)
            plate_gain = (1 + cfg.plate_gain_sd * rng.standard_normal(lm_n)).astype(np.float32)
            well_signal = np.zeros((n_w, lm_n), np.float32)
            well_signal[n_ctl:] = signal * plate_gain
            prog_amp = np.exp(cfg.plate_program_sd * rng.standard_normal(len(world.noise_sds)))
            noise_coef = rng.standard_normal((n_w, len(world.noise_sds))) * (
                world.noise_sds * prog_amp
            )
            structured = (noise_coef.astype(np.float32) @ world.noise_programs) * math.sqrt(lm_n)
            pos = np.arange(n_w)
            row_pos = (pos % 16) / 15.0 - 0.5
            col_pos = (pos // 16) / 23.0 - 0.5
            grad = rng.standard_normal((2, cfg.n_programs)).astype(np.float32) @ world.programs
            gradient = (
                cfg.plate_gradient_sd
                * math.sqrt(lm_n)
                * (np.outer(row_pos, grad[0]) + np.outer(col_pos, grad[1]))
            )
            quality = np.exp(cfg.well_quality_sd * rng.standard_normal(n_w)).astype(np.float32)
            well_noise = rng.standard_t(cfg.well_noise_df, (n_w, lm_n)).astype(np.float32)
            well_noise *= (cfg.well_noise_sd * quality)[:, None]
            offset = 0.3 * rng.standard_normal(lm_n).astype(np.float32)
            level3_lm = baseline + offset + well_signal + structured + gradient + well_noise
            if landmarks_only:
                level4 = _robust_zscore(level3_lm, cfg.mad_floor)
            else:
                inferred = (level3_lm @ world.inference_a) @ world.inference_c
                inferred += world.extra["inference_noise_sd"] * rng.standard_normal(
                    inferred.shape, dtype=np.float32
                )
                level4 = _robust_zscore(
                    np.concatenate([level3_lm, inferred], axis=1), cfg.mad_floor
                )

            keep = min(n_w, limit - produced)
            inst = _plate_metadata(world, pmap, rep, cells[pmap.cell])
            yield _Plate(inst.iloc[:keep].reset_index(drop=True), level4[:keep])
            produced += keep


def _plate_metadata(world: _World, pmap: _PlateMap, rep: int, cell: str) -> pd.DataFrame:
    cfg = world.config
    perts = world.perts
    rna_plate = f"{pmap.map_id}_{cell}_{pmap.time_h}H_X{rep}"
    det_plate = f"{rna_plate}_B{(rep - 1) % 2 + 1}_DUO52HI53LO"
    n_vehicle, n_untreated = cfg.controls(len(pmap.pert_idx))
    wells = _well_names(len(pmap.pert_idx) + n_vehicle + n_untreated)
    if pmap.kind == "cp":
        vehicle = ("DMSO", "DMSO", "ctl_vehicle", "0.1", "%")
    else:
        vehicle = ("CMAP-VEC001", "EMPTY_VECTOR", "ctl_vector", "1", "µL")
    untrt = ("CMAP-UNTRT", "UnTrt", "ctl_untrt", "-666", "-666")
    ctl = [vehicle] * n_vehicle + [untrt] * n_untreated
    ptypes = perts["pert_type"].to_numpy()[pmap.pert_idx]
    unit = np.where(ptypes == "trt_cp", "µM", "µL")
    dose = np.where(ptypes == "trt_cp", np.round(pmap.dose, 2).astype(str), "1")
    treat = list(
        zip(
            perts["pert_id"].to_numpy()[pmap.pert_idx],
            perts["pert_iname"].to_numpy()[pmap.pert_idx],
            ptypes,
            dose,
            unit,
        )
    )
    rows = ctl + treat
    df = pd.DataFrame(
        rows, columns=["pert_id", "pert_iname", "pert_type", "pert_dose", "pert_dose_unit"]
    )
    df.insert(0, "rna_well", wells)
    df.insert(0, "rna_plate", rna_plate)
    df.insert(0, "inst_id", [f"{det_plate}:{w}" for w in wells])
    df["pert_time"] = str(pmap.time_h)
    df["pert_time_unit"] = "h"
    df["cell_id"] = cell
    return df[INST_COLUMNS]


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------
def build_world(config: SyntheticConfig) -> tuple[_World, list[_PlateMap]]:
    """The perturbagens, cell lines and plate design of a release (small; no profiles).

    The perturbagen count is raised until the design covers ``config.n_profiles`` wells.
    """
    scale = 1.0
    while True:
        world = _build_world(config, scale)
        maps = _design(world)
        total = sum(
            (len(m.pert_idx) + sum(config.controls(len(m.pert_idx)))) * config.replicates
            for m in maps
        )
        if total >= config.n_profiles:
            return world, maps
        scale *= 1.1 * config.n_profiles / total


def pert_info_table(world: _World) -> pd.DataFrame:
    """GEO ``pert_info`` plus the ground truth (``moa``, ``target``), controls included."""
    p = world.perts
    treat = pd.DataFrame(
        {
            "pert_id": p["pert_id"],
            "canonical_smiles": np.where(p["pert_type"] == "trt_cp", "C" * 6, "-666"),
            "inchi_key": np.where(
                p["pert_type"] == "trt_cp",
                [f"SYNTHINCHIKEY{i:09d}-N" for i in range(len(p))],
                "-666",
            ),
            "pert_iname": p["pert_iname"],
            "pert_type": p["pert_type"],
            "moa": p["moa"],
            "target": p["target"],
        }
    )
    controls = pd.DataFrame(
        [
            (
                "DMSO",
                "CS(C)=O",
                "IAZDPXIOMUYVGZ-UHFFFAOYSA-N",
                "DMSO",
                "ctl_vehicle",
                "-666",
                "-666",
            ),
            ("CMAP-VEC001", "-666", "-666", "EMPTY_VECTOR", "ctl_vector", "-666", "-666"),
            ("CMAP-UNTRT", "-666", "-666", "UnTrt", "ctl_untrt", "-666", "-666"),
        ],
        columns=PERT_COLUMNS,
    )
    return pd.concat([controls, treat[PERT_COLUMNS]], ignore_index=True)


def write_synthetic_release(
    out_dir: str | Path,
    config: SyntheticConfig = SyntheticConfig(),
    *,
    progress: Progress | None = None,
) -> ReleaseFiles:
    """Write a synthetic release in GEO GSE92742 layout into ``out_dir``.

    Parameters
    ----------
    out_dir
        Directory for the files (created if missing).
    config
        The release's size, seed and generative knobs.
    progress
        Called as ``progress(done, total, seconds)`` after each plate.

    Returns
    -------
    ReleaseFiles
        The paths written. The release is written into a temporary sibling directory and
        swapped in whole, so a failed run leaves the previous release in ``out_dir``
        untouched. An existing ``out_dir`` that is not a synthetic release (no
        ``synthetic_release.json``) and not empty is refused rather than replaced.
    """
    out_dir = Path(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).exists():
        raise L1000InputError(
            out_dir,
            "not empty and not a synthetic release: refusing to "
            "replace it (choose a new or empty directory)",
        )
    world, maps = build_world(config)
    with atomic_dir(out_dir) as tmp:
        files = ReleaseFiles.for_release(tmp, config.n_profiles)
        n_plates = _write_release(files, world, maps, config, progress)
        manifest = {
            "generator": "l1000_assets.core.releases.synthetic",
            "config": asdict(config),
            "files": {
                k: Path(v).name for k, v in asdict(files).items() if k not in ("root", "manifest")
            },
            "n_perturbagens": int(len(world.perts)),
            "n_plates": n_plates,
        }
        files.manifest.write_text(json.dumps(manifest, indent=2, default=list) + "\n")
    return ReleaseFiles.for_release(out_dir, config.n_profiles)


def _write_release(
    files: ReleaseFiles,
    world: _World,
    maps: list[_PlateMap],
    config: SyntheticConfig,
    progress: Progress | None,
) -> int:
    """Write the matrix and the tables into ``files``; return the number of plates."""
    t0 = time.perf_counter()
    genes = world.genes
    n_plates = 0
    with (
        GctxWriter(
            files.level4, genes["pr_gene_id"].tolist(), config.n_profiles, chunks=config.chunks
        ) as writer,
        open(files.inst_info, "w", encoding="utf-8", newline="") as inst_out,
    ):
        inst_out.write("\t".join(INST_COLUMNS) + "\n")
        buffered: list[_Plate] = []
        n_buffered = 0
        for plate in _plates(world, maps, config.n_profiles):
            n_plates += 1
            buffered.append(plate)
            n_buffered += len(plate.inst)
            # Write whole on-disk chunks at a time: no partial-chunk rewrites.
            if n_buffered >= config.chunks[0]:
                _flush(writer, inst_out, buffered)
                buffered, n_buffered = [], 0
            if progress is not None:
                progress(writer.written + n_buffered, config.n_profiles, time.perf_counter() - t0)
        _flush(writer, inst_out, buffered)
    for path, table in (
        (files.gene_info, genes[GENE_COLUMNS]),
        (files.pert_info, pert_info_table(world)),
        (files.cell_info, world.cells),
    ):
        table.to_csv(path, sep="\t", index=False, encoding="utf-8")
    return n_plates


def _flush(writer: GctxWriter, inst_out, plates: list[_Plate]) -> None:
    if not plates:
        return
    inst = pd.concat([p.inst for p in plates], ignore_index=True)
    writer.write_block(inst["inst_id"].tolist(), np.concatenate([p.level4 for p in plates]))
    inst.to_csv(inst_out, sep="\t", index=False, header=False)


def simulate_landmark_profiles(config: SyntheticConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """The release's ``inst_info`` and level-4 landmark values (N x 978) in memory.

    The same values as the landmark rows of :func:`write_synthetic_release`'s GCTX, without
    simulating the inferred genes; for calibration and tests on small releases.
    """
    world, maps = build_world(config)
    plates = list(_plates(world, maps, config.n_profiles, landmarks_only=True))
    inst = pd.concat([p.inst for p in plates], ignore_index=True)
    return inst, np.concatenate([p.level4 for p in plates])


def default_config(**overrides) -> SyntheticConfig:
    """The calibrated default configuration, with ``overrides`` applied."""
    return replace(SyntheticConfig(), **overrides)
