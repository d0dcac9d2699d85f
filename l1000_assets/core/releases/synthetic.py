"""The embedded synthetic LINCS release: GEO GSE92742 layout, real names, known ground truth.

:func:`write_synthetic_release` writes a level-4 GCTX
(``..._Level4_ZSPCINF_mlr12k_n{N}x12328.gctx``) and the GEO metadata tables (``inst_info``,
``gene_info``, ``pert_info``, ``cell_info``) for a simulated L1000 experiment, streamed plate
by plate so memory does not grow with ``N`` (the world is ``O(perturbagens)``).

**Nothing in it is a measurement.** The names are real (the 12,328 genes of the GEO level-4
files, LINCS compounds with their real MOAs, targets and SMILES, shRNAs and cDNAs of real
genes, the LINCS core cell lines: :mod:`l1000_assets.core.releases.reference`), so the
platform's joins, annotations and structure baseline meet real values; what a compound
*does* in the release is this module's model, and the manifest says ``"synthetic": true``.

The generative model (why each part is there: ``science.md`` section 6 and issue 14):

* **Genes.** The real 12,328 genes, the 978 landmarks first (ascending Entrez id, the lake's
  order). The 11,350 inferred genes are noisy low-rank linear combinations of the landmarks'
  level-3 values, as CMap's inference makes them (well-inferred "BING" genes less noisy).
* **Pathway modules and target programs.** ``n_modules`` shared gene modules (sparse signed
  loadings over the landmarks). Every target gene has a *program*: coefficients over the
  modules, shared within its gene family (``HTR2A`` and ``HTR2C``, ``PDE4A`` and ``PDE4D``,
  ``CDK1`` and ``CDK4``: the leading letters of the symbol) plus member-specific ones, and a
  gene-level downstream part of its own; a second, *late* program takes over with time.
* **Compounds** act through their targets: the effect is the sum of the programs of the
  annotated targets (the first one weighted most) and of hidden off-targets, signed by the
  MOA (inhibitor, antagonist, blocker: down; agonist, activator: up). Off-targets are drawn
  per compound and *inherited* from its structural neighbours (ECFP4 Tanimoto, RDKit) with a
  probability that grows with the similarity, so similar structures share off-targets.
  Unannotated compounds act through hidden targets only.
* **shRNAs** knock down their gene's program (hairpin-specific efficiency) and add the
  off-target effect of their seed sequence, shared by every hairpin with that seed; a
  landmark gene's own mRNA drops. **cDNAs** over-express their gene's program (and raise the
  gene's own mRNA when it is a landmark).
* **Cell lines** modulate module activity (per-line gains, some modules nearly silent) and
  target expression (a target a line barely expresses transmits little), scale the response,
  and add a perturbagen x cell-line idiosyncratic part.
* **Dose and time.** Hill dose-response with a per-compound EC50; the late programs grow
  with time. **Strength** is heavy-tailed: log-normal potency, a fraction of near-inert
  perturbagens, and a per-well signal gain.
* **Plates.** A plate holds one cell line at one time point: treatment wells plus
  vehicle/vector and untreated controls, replicated on ``replicates`` plates. Level 3 is
  simulated per well; level 4 is the per-plate robust z-score ``(x - median) / (1.4826 *
  MAD)`` over the plate population, as CMap computes it. Plates carry non-additive batch
  effects (per-plate gene gains and program amplitudes, a position gradient) that the
  robust z-score does not remove.
* **Noise.** A few dominant programs with large random per-well amplitudes (structured
  noise shared by all profiles), heavy-tailed Student-t well noise with a per-well quality.

Everything is drawn from ``numpy.random.Generator`` streams keyed by ``(seed, purpose,
index)``, so the same seed gives the same values regardless of block sizes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from l1000_assets.core.atomic import atomic_dir
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.gctx import GctxWriter
from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.layout import SYNTHETIC_MANIFEST
from l1000_assets.core.progress import Progress
from l1000_assets.core.releases import reference

N_GENES = 12_328
WELL_ROWS = "ABCDEFGHIJKLMNOP"  # 16 x 24 = 384 wells
WELLS_PER_PLATE = 384
PREFIX = "SYNTH_Broad_LINCS"
MANIFEST_NAME = SYNTHETIC_MANIFEST
GENERATOR_VERSION = 2
SYNTHETIC_NOTE = (
    "SYNTHETIC release: simulated profiles with real gene and compound names; not biology"
)

# The LINCS core cell lines first (Subramanian et al. 2017), then other frequent lines.
CELL_LINES = (
    ("A375", "skin", "malignant melanoma"),
    ("A549", "lung", "non-small cell lung carcinoma"),
    ("HA1E", "kidney", "immortalized normal kidney epithelium"),
    ("HT29", "large intestine", "colorectal adenocarcinoma"),
    ("MCF7", "breast", "breast adenocarcinoma"),
    ("PC3", "prostate", "prostate adenocarcinoma"),
    ("VCAP", "prostate", "prostate carcinoma"),
    ("HEPG2", "liver", "hepatocellular carcinoma"),
    ("HCC515", "lung", "non-small cell lung carcinoma"),
    ("SK-N-SH", "central nervous system", "neuroblastoma"),
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
MISSING = "-666"

# Purposes of the random streams: one integer each, so streams never collide.
_GLOBAL, _PERT, _CELL, _MAP, _PLATE, _PAIR, _TARGET, _SEED, _COMPOUND, _STRUCTURE = range(10)

# MOA words that lower the target's activity; activating words raise it. Anything else
# (e.g. "DNA alkylating agent") counts as lowering, as most drugs in LINCS do.
_UP_WORDS = re.compile(r"\b(agonist|activator|opener|stimulant|inducer|potentiator|enhancer)\b")
_DOWN_WORDS = re.compile(r"\b(antagonist|inhibitor|blocker|inverse agonist|degrader|disruptor)\b")


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic release. Defaults are calibrated against the paper's z-score
    figures (``l1000 calibrate``; see the README).

    The number of perturbagens follows from ``n_profiles`` and the design (cell lines per
    perturbagen x doses x times x replicates), like a real screen: about 30 profiles each.
    """

    n_profiles: int = 36_000
    seed: int = 0
    n_cell_lines: int = 8
    cells_per_perturbagen: int = 6
    replicates: int = 3
    compound_doses_um: tuple[float, ...] = (1.11, 10.0)
    compound_times_h: tuple[int, ...] = (6, 24)
    genetic_times_h: tuple[int, ...] = (96, 144)
    fraction_compound: float = 0.7
    fraction_shrna: float = 0.2  # the rest are cDNA (trt_oe)
    hairpins_per_gene: int = 3
    compound_class_weight: float = 1.0
    inert_fraction: float = 0.1
    # Biology: modules, target programs, compounds, hairpins.
    n_modules: int = 60
    module_density: float = 0.08
    modules_per_family: int = 3
    member_module_sd: float = 0.6
    target_gene_weight: float = 0.2
    late_program_angle: float = 0.9
    secondary_target_weight: float = 0.6
    off_target_rate: float = 2.0
    off_target_weight: float = 0.3
    off_target_pool: int = 400
    structure_neighbours: int = 8
    structure_share_from: float = 0.25
    structure_share_full: float = 0.7
    shrna_seed_pool: float = 0.5
    shrna_seed_weight: float = 0.8
    shrna_efficiency_sd: float = 0.4
    overexpression_gain: float = 0.5
    generic_weight: float = 0.3
    strength_exponent: float = 0.5
    n_generic: int = 4
    off_target_ec50_factor: float = 10.0
    genetic_compound_target_fraction: float = 0.5
    genetic_landmark_fraction: float = 0.2
    genetic_strength: float = 0.7
    secondary_angle_early: float = 0.3
    secondary_angle_late: float = 0.8
    cell_module_sd: float = 0.5
    cell_module_off: float = 0.1
    target_expression_sd: float = 0.5
    target_off: float = 0.15
    receptor_off: float = 0.4
    pert_cell_weight: float = 0.3
    pert_cell_sensitivity_sd: float = 1.0
    condition_weight: float = 0.3
    early_amplitude: float = 0.7
    # Amplitudes, in log2-expression units of level 3.
    effect_scale: float = 3.0
    potency_sd: float = 0.5
    target_knockdown: float = 1.0
    n_noise_programs: int = 5
    noise_program_sd: float = 1.0
    well_noise_sd: float = 0.4
    well_noise_df: float = 3.0
    well_quality_sd: float = 0.25
    well_range_sd: float = 0.25
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
        if not 0 <= self.structure_share_from < self.structure_share_full <= 1:
            raise ValueError("need 0 <= structure_share_from < structure_share_full <= 1")

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
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


# --------------------------------------------------------------------------------------
# The world: genes, modules, targets, cell lines, perturbagens (all O(perturbagens))
# --------------------------------------------------------------------------------------
@dataclass
class World:
    """The ground truth of a release (small: no profiles).

    ``targets`` has one row per gene that a perturbagen acts on (``symbol``, ``family``,
    ``landmark`` = its landmark index or -1); its programs are ``target_early`` /
    ``target_late`` (module coefficients) and ``target_gene`` (gene-level part). ``weights``
    (perturbagens x targets, signed) is how much each perturbagen acts on each target, the
    annotated (not hidden) targets' part in ``annotated_weights``; hairpins add
    ``seed_coef`` / ``seed_gene`` of their seed (``perts["seed_index"]``), every
    perturbagen ``generic_coef`` times the generic responses ``generic``.
    """

    config: SyntheticConfig
    genes: pd.DataFrame
    modules: np.ndarray  # (M, 978) unit rows
    noise_programs: np.ndarray  # (K_s, 978), unit rows
    noise_sds: np.ndarray  # (K_s,)
    inference_a: np.ndarray  # (978, r)
    inference_c: np.ndarray  # (r, 11350)
    inference_noise_sd: np.ndarray  # (11350,)
    cells: pd.DataFrame
    cell_gain: np.ndarray  # (C, M) module activity per cell line
    cell_expression: np.ndarray  # (C, T) target expression per cell line
    cell_response: np.ndarray  # (C,)
    targets: pd.DataFrame
    target_early: np.ndarray  # (T, M)
    target_late: np.ndarray  # (T, M)
    target_gene: np.ndarray  # (T, 978)
    seeds: list[str]
    seed_coef: np.ndarray  # (S, M)
    seed_gene: np.ndarray  # (S, 978)
    perts: pd.DataFrame  # one row per treatment perturbagen
    weights: sparse.csr_matrix  # (P, T) float32, all targets
    annotated_weights: sparse.csr_matrix  # (P, T) float32, the annotated targets' part
    generic: np.ndarray  # (G, M) generic responses (stress, proliferation) in modules
    generic_coef: np.ndarray  # (P, G) how much each perturbagen triggers each
    pert_cells: np.ndarray  # (P, cells_per_perturbagen)
    extra: dict = field(default_factory=dict)

    def effects(
        self,
        pert_idx: np.ndarray,
        cell: int | None = None,
        *,
        late: bool = False,
        off_target_scale: np.ndarray | None = None,
    ) -> np.ndarray:
        """True effect directions ``(n, 978)`` of perturbagens, before dose, potency and
        noise: in cell line ``cell`` (None: an average line, every module and target at
        gain 1), at the early or late time point; ``off_target_scale`` (n,) multiplies the
        hidden targets' weights (their occupancy at a dose, relative to the annotated
        targets'). The perturbagen x cell-line idiosyncratic part is not included."""
        cfg = self.config
        pert_idx = np.asarray(pert_idx)
        hidden = self.weights[pert_idx] - self.annotated_weights[pert_idx]
        if off_target_scale is not None:
            hidden = sparse.diags(np.asarray(off_target_scale, np.float32)) @ hidden
        w = (self.annotated_weights[pert_idx] + hidden).tocsr()
        if cell is not None:
            w = w.multiply(self.cell_expression[cell][None, :]).tocsr()
        angle = cfg.secondary_angle_late if late else cfg.secondary_angle_early
        coef = np.asarray(
            math.cos(angle) * (w @ self.target_early) + math.sin(angle) * (w @ self.target_late)
        )
        gene = np.asarray(w @ self.target_gene)
        seed = self.perts["seed_index"].to_numpy()[pert_idx]
        has_seed = seed >= 0
        seed_w = self.perts["seed_weight"].to_numpy()[pert_idx][has_seed, None]
        coef[has_seed] += seed_w * self.seed_coef[seed[has_seed]]
        gene[has_seed] += seed_w * self.seed_gene[seed[has_seed]]
        coef += self.generic_coef[pert_idx] @ self.generic
        if cell is not None:
            coef = coef * self.cell_gain[cell][None, :]
        return (coef @ self.modules + gene).astype(np.float32)


def platform_genes() -> pd.DataFrame:
    """The real L1000 genes in the release's row order: the 978 landmarks first, then the
    inferred genes, each in ascending Entrez id. The same for every seed, so releases of
    different seeds share one lake and one model."""
    genes = reference.genes()
    is_lm = genes["pr_is_lm"] == "1"
    order = np.concatenate([np.nonzero(is_lm)[0], np.nonzero(~is_lm)[0]])
    out = genes.iloc[order].reset_index(drop=True)
    out["pr_is_lm"] = out["pr_is_lm"].astype(int)
    out["pr_is_bing"] = out["pr_is_bing"].astype(int)
    return out[GENE_COLUMNS]


def gene_family(symbol: str) -> str:
    """The family of a gene symbol: its leading letters (``HTR2A`` -> ``HTR``, ``PDE4D``
    -> ``PDE``, ``EGFR`` -> ``EGFR``); symbols with fewer than three leading letters are
    their own family."""
    m = re.match(r"[A-Z]+", symbol.upper())
    return m.group(0) if m and len(m.group(0)) >= 3 else symbol.upper()


def moa_sign(moa: str | None) -> float:
    """+1 when the MOAs (``|``-separated) say more often that the compound raises its
    targets' activity (agonist, activator...) than that it lowers it, else -1."""
    if not moa or moa == MISSING:
        return -1.0
    items = [m.lower() for m in moa.split("|")]
    down = sum(bool(_DOWN_WORDS.search(m)) for m in items)
    up = sum(bool(_UP_WORDS.search(m)) and not _DOWN_WORDS.search(m) for m in items)
    return 1.0 if up > down else -1.0


@lru_cache(maxsize=1)
def _receptor_targets() -> frozenset[str]:
    """Targets whose compounds' MOAs mostly name a receptor or a channel (in the whole
    reference, so the same for every release)."""
    ann = reference.compounds().dropna(subset=["moa", "target"])
    ligand = ann["moa"].str.lower().str.contains(r"receptor|channel", regex=True)
    rows = pd.DataFrame({"target": ann["target"].str.split("|"), "ligand": ligand})
    share = rows.explode("target").groupby("target")["ligand"].mean()
    return frozenset(share.index[share > 0.5])


def basal_activity(symbols, rng: np.random.Generator) -> np.ndarray:
    """Each target's activity in an untreated cultured cell, in [0, 1]: receptors and
    channels mostly idle (no ligand in the medium; Beta(0.5, 4)), enzymes and other
    proteins mostly busy (Beta(4, 1.5)), genes no compound targets in between (Beta(2,
    2))."""
    receptors = _receptor_targets()
    targeted = {t for ts in reference.compounds()["target"].dropna() for t in ts.split("|")}
    out = np.empty(len(symbols))
    for i, s in enumerate(symbols):
        if s in receptors:
            out[i] = rng.beta(0.5, 4.0)
        elif s in targeted:
            out[i] = rng.beta(4.0, 1.5)
        else:
            out[i] = rng.beta(2.0, 2.0)
    return out


def _sparse_rows(rng: np.random.Generator, n: int, density: float) -> np.ndarray:
    raw = rng.standard_normal((n, N_LANDMARKS)) * (rng.random((n, N_LANDMARKS)) < density)
    raw += 0.1 * rng.standard_normal((n, N_LANDMARKS))
    return raw


def _make_cells(cfg: SyntheticConfig) -> pd.DataFrame:
    rows = []
    for j in range(cfg.n_cell_lines):
        if j < len(CELL_LINES):
            name, site, subtype = CELL_LINES[j]
        else:
            name, site, subtype = f"SYN-C{j:03d}", MISSING, MISSING
        rows.append(
            {
                "cell_id": name,
                "cell_type": "cell line",
                "base_cell_id": name,
                "precursor_cell_id": MISSING,
                "modification": MISSING,
                "sample_type": "tumor",
                "primary_site": site,
                "subtype": subtype,
                "original_growth_pattern": "adherent",
                "donor_sex": MISSING,
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


def _split(value) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [v for v in str(value).split("|") if v]


def _choose_compounds(cfg: SyntheticConfig, n_cp: int) -> pd.DataFrame:
    """``n_cp`` real compounds: annotated ones first, then unannotated; a release needing
    more than the reference holds reuses compounds as new batches.

    Annotated compounds are drawn (without replacement) with weights that grow with the
    number of reference compounds sharing one of their targets (``compound_class_weight``
    is the exponent; 0: uniform), as a reference screen picks several compounds per
    class: a small release then still holds compounds that share targets.
    """
    pool = reference.compounds()
    annotated = (pool["moa"].notna() & pool["target"].notna()).to_numpy()
    rng = _rng(cfg.seed, _COMPOUND)
    ann_idx = np.nonzero(annotated)[0]
    targets = pool["target"].to_numpy()[ann_idx]
    counts = pd.Series([t for ts in targets for t in ts.split("|")]).value_counts()
    mates = np.array([max(counts[t] for t in ts.split("|")) for ts in targets], float)
    weight = np.minimum(mates, 30.0) ** cfg.compound_class_weight
    keys = np.log(rng.random(len(ann_idx))) / weight  # Efraimidis-Spirakis order
    order = np.concatenate(
        [ann_idx[np.argsort(-keys, kind="stable")], rng.permutation(np.nonzero(~annotated)[0])]
    )
    picks = order[np.arange(n_cp) % len(order)]
    out = pool.iloc[picks].reset_index(drop=True)
    batch = np.arange(n_cp) // len(order)
    out["pert_id"] = [pid if b == 0 else f"{pid}-B{b + 1}" for pid, b in zip(out["pert_id"], batch)]
    return out


def _hairpin_ids(rng: np.random.Generator, n: int) -> list[str]:
    numbers = rng.choice(np.arange(1, 490_000), size=n, replace=False)
    return [f"TRCN{x:010d}" for x in np.sort(numbers)]


def _seed_sequences(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct 7-mer seed sequences (positions 2-8 of the guide strand)."""
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen["".join(rng.choice(list("ACGU"), 7))] = None
    return list(seen)


def _build_world(cfg: SyntheticConfig, scale: float = 1.0) -> World:
    from l1000_assets.core.structure.fingerprints import ecfp4
    from l1000_assets.core.structure.tanimoto import top_similar

    rng = _rng(cfg.seed, _GLOBAL)
    genes = platform_genes()
    symbols = genes["pr_gene_symbol"].to_numpy()
    landmark_of = {s: i for i, s in enumerate(symbols[:N_LANDMARKS])}
    m = cfg.n_modules
    modules = _unit_rows(_sparse_rows(rng, m, cfg.module_density)).astype(np.float32)
    noise_programs = _unit_rows(_sparse_rows(rng, cfg.n_noise_programs, 0.5))
    noise_sds = cfg.noise_program_sd * np.geomspace(1.5, 0.6, cfg.n_noise_programs)
    r = cfg.inference_rank
    inference_a = rng.standard_normal((N_LANDMARKS, r)) / math.sqrt(N_LANDMARKS)
    inference_c = rng.standard_normal((r, N_GENES - N_LANDMARKS)) / math.sqrt(r)

    n_cp, n_sh, n_oe = (int(math.ceil(x * scale)) for x in _count_perturbagens(cfg))
    compounds = _choose_compounds(cfg, n_cp)
    compound_targets = [_split(t) for t in compounds["target"]]

    # Genes of the genetic perturbagens: partly the compounds' targets (so knock-downs can
    # mimic inhibitors, as CMap found), partly landmark genes.
    gene_set = set(symbols)
    known = sorted({t for ts in compound_targets for t in ts if t in gene_set})
    n_sh_genes = max(1, math.ceil(n_sh / cfg.hairpins_per_gene))

    def genetic_genes(n: int) -> list[str]:
        """A compound target, else a landmark gene, else any L1000 gene."""
        out = []
        for u in rng.random(n):
            if u < cfg.genetic_compound_target_fraction and known:
                out.append(known[rng.integers(len(known))])
            elif u < cfg.genetic_compound_target_fraction + cfg.genetic_landmark_fraction:
                out.append(symbols[rng.integers(N_LANDMARKS)])
            else:
                out.append(symbols[rng.integers(N_GENES)])
        return out

    sh_genes = genetic_genes(n_sh_genes)
    oe_genes = genetic_genes(n_oe)
    pool_genes = list(rng.choice(symbols, size=cfg.off_target_pool, replace=False))
    target_symbols = list(
        dict.fromkeys([t for ts in compound_targets for t in ts] + sh_genes + oe_genes + pool_genes)
    )
    target_index = {s: i for i, s in enumerate(target_symbols)}
    targets = pd.DataFrame(
        {
            "symbol": target_symbols,
            "family": [gene_family(s) for s in target_symbols],
            "landmark": [landmark_of.get(s, -1) for s in target_symbols],
        }
    )
    t_n = len(targets)

    # Target programs: family modules shared, member-specific modules, own gene-level part.
    families = sorted(targets["family"].unique())
    family_early, family_late = {}, {}
    for family in families:
        frng = _rng(cfg.seed, _TARGET, 0, _symbol_key(family))
        for store in (family_early, family_late):
            coef = np.zeros(m)
            chosen = frng.choice(m, size=min(cfg.modules_per_family, m), replace=False)
            coef[chosen] = frng.standard_normal(len(chosen)) + np.sign(
                frng.standard_normal(len(chosen))
            )
            store[family] = coef
    target_early = np.zeros((t_n, m))
    target_late = np.zeros((t_n, m))
    target_gene = np.zeros((t_n, N_LANDMARKS))
    for t_i, (symbol, family) in enumerate(zip(targets["symbol"], targets["family"])):
        trng = _rng(cfg.seed, _TARGET, 1, _symbol_key(symbol))
        for store, base in ((target_early, family_early), (target_late, family_late)):
            own = np.zeros(m)
            own[trng.choice(m, size=2, replace=False)] = trng.standard_normal(2)
            store[t_i] = base[family] + cfg.member_module_sd * (
                own + 0.5 * (base[family] != 0) * trng.standard_normal(m)
            )
        gene_part = trng.standard_normal(N_LANDMARKS) * (trng.random(N_LANDMARKS) < 0.05)
        target_gene[t_i] = gene_part
    # Scale: a program's module part and gene part in the configured proportion.
    module_norm = np.linalg.norm(target_early @ modules, axis=1, keepdims=True)
    target_early /= np.maximum(module_norm, 1e-6)
    target_late /= np.maximum(np.linalg.norm(target_late @ modules, axis=1, keepdims=True), 1e-6)
    target_gene = cfg.target_gene_weight * _unit_rows(target_gene)

    # Compounds: annotated targets, private off-targets, off-targets inherited by structure.
    fps = ecfp4(compounds["canonical_smiles"])
    private = []
    for i in range(n_cp):
        crng = _rng(cfg.seed, _PERT, i)
        hidden = []
        if not compound_targets[i]:  # unannotated: one or two hidden primary targets
            hidden = list(crng.choice(target_symbols, size=1 + int(crng.random() < 0.5)))
        n_off = crng.poisson(cfg.off_target_rate)
        private.append(
            (hidden, list(crng.choice(pool_genes, size=n_off, replace=False)) if n_off else [])
        )
    inherited: list[list[str]] = [[] for _ in range(n_cp)]
    k = min(cfg.structure_neighbours, max(n_cp - 1, 1))
    if n_cp > 1:
        nb = top_similar(fps.packed, fps.packed, k, exclude_self=True)
        srng = _rng(cfg.seed, _STRUCTURE)
        span = cfg.structure_share_full - cfg.structure_share_from
        for i in range(n_cp):
            if not fps.valid[i]:
                continue
            for j, s in zip(nb.index[i], nb.similarity[i]):
                if j < 0 or not fps.valid[j]:
                    continue
                p_share = min(1.0, max(0.0, (float(s) - cfg.structure_share_from) / span))
                for off in private[j][1]:
                    if srng.random() < p_share:
                        inherited[i].append(off)
    off_sign = np.where(_rng(cfg.seed, _TARGET, 2).random(t_n) < 0.8, -1.0, 1.0)
    basal = basal_activity(targets["symbol"], _rng(cfg.seed, _TARGET, 3))
    targets["basal_activity"] = basal

    def change(ti: int, sign: float) -> float:
        """Activity change of target ``ti``: an inhibitor removes the basal activity, an
        activator adds what is left (a neutral antagonist of an idle receptor does little)."""
        return -basal[ti] if sign < 0 else 1.0 - basal[ti]

    rows, cols, vals, is_annotated = [], [], [], []
    pert_rows = []
    for i, row in compounds.iterrows():
        sign = moa_sign(row["moa"])
        hidden, own_off = private[i]
        entries: dict[int, tuple[float, bool]] = {}
        for rank, t in enumerate(compound_targets[i]):
            weight = 1.0 if rank == 0 else cfg.secondary_target_weight
            entries[target_index[t]] = (weight * change(target_index[t], sign), True)
        for rank, t in enumerate(hidden):
            weight = 1.0 if rank == 0 else cfg.secondary_target_weight
            entries.setdefault(target_index[t], (weight * change(target_index[t], -1.0), False))
        for t in dict.fromkeys(own_off + inherited[i]):
            ti = target_index[t]
            entries.setdefault(ti, (cfg.off_target_weight * change(ti, off_sign[ti]), False))
        for ti, (v, ann) in entries.items():
            rows.append(len(pert_rows))
            cols.append(ti)
            vals.append(v)
            is_annotated.append(ann)
        pert_rows.append(
            {
                "pert_type": "trt_cp",
                "pert_id": row["pert_id"],
                "pert_iname": row["pert_iname"],
                "moa": row["moa"] or MISSING,
                "target": row["target"] or MISSING,
                "canonical_smiles": row["canonical_smiles"] or MISSING,
                "inchi_key": row["inchi_key"] or MISSING,
                "seed_index": -1,
                "seed_weight": 0.0,
                "self_landmark": -1,
                "self_sign": 0.0,
                "hidden_targets": "|".join(
                    dict.fromkeys(hidden + [t for t in own_off + inherited[i]])
                ),
            }
        )
    # shRNAs: knock-down of the gene's program, seed off-target effect shared by seed.
    grng = _rng(cfg.seed, _SEED)
    n_seeds = max(1, round(n_sh * cfg.shrna_seed_pool))
    seeds = _seed_sequences(grng, n_seeds)
    seed_coef = np.zeros((n_seeds, m))
    for s_i in range(n_seeds):
        seed_coef[s_i, grng.choice(m, size=2, replace=False)] = grng.standard_normal(2)
    seed_gene = -np.abs(grng.standard_normal((n_seeds, N_LANDMARKS))) * (
        grng.random((n_seeds, N_LANDMARKS)) < 0.06
    )
    seed_coef /= np.maximum(np.linalg.norm(seed_coef @ modules, axis=1, keepdims=True), 1e-6)
    seed_gene = cfg.target_gene_weight * _unit_rows(seed_gene)
    hairpin_seed = grng.integers(0, n_seeds, n_sh)
    efficiency = np.exp(cfg.shrna_efficiency_sd * grng.standard_normal(n_sh))
    for h, pid in enumerate(_hairpin_ids(grng, n_sh)):
        gene = sh_genes[h // cfg.hairpins_per_gene]
        rows.append(len(pert_rows))
        cols.append(target_index[gene])
        vals.append(float(efficiency[h]) * change(target_index[gene], -1.0))
        is_annotated.append(True)
        pert_rows.append(
            {
                "pert_type": "trt_sh",
                "pert_id": pid,
                "pert_iname": gene,
                "moa": MISSING,
                "target": gene,
                "canonical_smiles": MISSING,
                "inchi_key": MISSING,
                "seed_index": int(hairpin_seed[h]),
                "seed_weight": cfg.shrna_seed_weight,
                "self_landmark": landmark_of.get(gene, -1),
                "self_sign": -float(min(efficiency[h], 1.5)),
                "hidden_targets": "",
            }
        )
    for o, gene in enumerate(oe_genes):
        rows.append(len(pert_rows))
        cols.append(target_index[gene])
        vals.append(cfg.overexpression_gain)
        is_annotated.append(True)
        pert_rows.append(
            {
                "pert_type": "trt_oe",
                "pert_id": f"ccsbBroad304_{o + 1:05d}",
                "pert_iname": gene,
                "moa": MISSING,
                "target": gene,
                "canonical_smiles": MISSING,
                "inchi_key": MISSING,
                "seed_index": -1,
                "seed_weight": 0.0,
                "self_landmark": landmark_of.get(gene, -1),
                "self_sign": 1.5,
                "hidden_targets": "",
            }
        )
    perts = pd.DataFrame(pert_rows)
    n_p = len(perts)
    weights = sparse.csr_matrix(
        (np.asarray(vals, np.float32), (rows, cols)), shape=(n_p, t_n), dtype=np.float32
    )
    ann = np.asarray(is_annotated, bool)
    annotated_weights = sparse.csr_matrix(
        (np.asarray(vals, np.float32)[ann], (np.asarray(rows)[ann], np.asarray(cols)[ann])),
        shape=(n_p, t_n),
        dtype=np.float32,
    )
    strength = np.where(perts["pert_type"] == "trt_cp", 1.0, cfg.genetic_strength)
    perts["potency"] = (
        strength
        * np.exp(cfg.potency_sd * rng.standard_normal(n_p))
        * np.where(rng.random(n_p) < cfg.inert_fraction, 0.08, 1.0)
    )
    perts["ec50_um"] = 10 ** (0.7 * rng.standard_normal(n_p))
    # Generic responses (proliferation down, DNA damage, unfolded proteins, ...) that many
    # unrelated perturbagens converge on: each triggers one or two of them.
    grng2 = _rng(cfg.seed, _GLOBAL, 1)
    g_n = cfg.n_generic
    generic = np.zeros((g_n, m))
    for g in range(g_n):
        generic[g, grng2.choice(m, size=2, replace=False)] = grng2.standard_normal(2)
    generic /= np.linalg.norm(generic @ modules, axis=1, keepdims=True)
    mix = (grng2.random((n_p, g_n)) < 1.5 / g_n) * grng2.random((n_p, g_n))
    generic_coef = (
        cfg.generic_weight
        * np.exp(0.5 * grng2.standard_normal(n_p))[:, None]
        * np.where(perts["pert_type"] == "trt_cp", 1.0, 0.5)[:, None]
        * mix
    )
    pert_cells = np.stack(
        [rng.choice(cfg.n_cell_lines, cfg.cells_per_perturbagen, replace=False) for _ in range(n_p)]
    )
    crng = _rng(cfg.seed, _CELL, 2**31)
    n_c = cfg.n_cell_lines
    cell_gain = np.exp(cfg.cell_module_sd * crng.standard_normal((n_c, m)))
    cell_gain *= np.where(crng.random((n_c, m)) < cfg.cell_module_off, 0.15, 1.0)
    cell_expression = np.exp(cfg.target_expression_sd * crng.standard_normal((n_c, t_n)))
    # Receptors and channels are mostly not expressed in cancer cell lines.
    p_off = np.where(targets["symbol"].isin(_receptor_targets()), cfg.receptor_off, cfg.target_off)
    cell_expression *= np.where(crng.random((n_c, t_n)) < p_off[None, :], 0.1, 1.0)
    cell_response = np.exp(0.3 * crng.standard_normal(n_c))

    world = World(
        config=cfg,
        genes=genes,
        modules=modules,
        noise_programs=noise_programs.astype(np.float32),
        noise_sds=noise_sds,
        inference_a=inference_a.astype(np.float32),
        inference_c=inference_c.astype(np.float32),
        inference_noise_sd=np.zeros(0, np.float32),
        cells=_make_cells(cfg),
        cell_gain=cell_gain.astype(np.float32),
        cell_expression=cell_expression.astype(np.float32),
        cell_response=cell_response,
        targets=targets,
        target_early=target_early.astype(np.float32),
        target_late=target_late.astype(np.float32),
        target_gene=target_gene.astype(np.float32),
        seeds=seeds,
        seed_coef=seed_coef.astype(np.float32),
        seed_gene=seed_gene.astype(np.float32),
        perts=perts,
        weights=weights,
        annotated_weights=annotated_weights,
        generic=generic.astype(np.float32),
        generic_coef=generic_coef.astype(np.float32),
        pert_cells=pert_cells,
    )
    # Effects in an average cell line scaled to a median norm of 1, a perturbagen's own
    # strength kept to the power ``strength_exponent``: a compound acting on many busy
    # targets is stronger, a neutral antagonist of an idle receptor weaker, than the median.
    norms = np.concatenate(
        [
            np.linalg.norm(world.effects(np.arange(s, min(s + 1024, n_p))), axis=1)
            for s in range(0, n_p, 1024)
        ]
    )
    norms = np.maximum(norms, 1e-6)
    scale = (norms / np.median(norms)) ** (cfg.strength_exponent - 1.0) / np.median(norms)
    rescale = sparse.diags(scale.astype(np.float32))
    world.weights = (rescale @ weights).tocsr().astype(np.float32)
    world.annotated_weights = (rescale @ annotated_weights).tocsr().astype(np.float32)
    perts["seed_weight"] = perts["seed_weight"] * scale
    world.generic_coef = (world.generic_coef * scale[:, None]).astype(np.float32)
    # Well-inferred ("BING") genes get the configured noise, the rest three times as much.
    bing = genes["pr_is_bing"].to_numpy()[N_LANDMARKS:] == 1
    world.inference_noise_sd = (cfg.inference_noise_sd * np.where(bing, 1.0, 3.0)).astype(
        np.float32
    )
    world.extra["fingerprints"] = fps
    return world


def _symbol_key(symbol: str) -> int:
    """A stable integer of a gene symbol (a random stream per target gene)."""
    return int.from_bytes(hashlib.sha256(symbol.encode()).digest()[:8], "big") >> 1


def _cell_baseline(world: World, c: int) -> np.ndarray:
    cfg = world.config
    return (8.0 + 1.5 * _rng(cfg.seed, _CELL, c, 1).standard_normal(N_LANDMARKS)).astype(np.float32)


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


def _design(world: World) -> list[_PlateMap]:
    cfg = world.config
    perts = world.perts
    pert_cells = world.pert_cells
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
    world: World,
    maps: list[_PlateMap],
    limit: int,
    landmarks_only: bool = False,
    level: int = 4,
) -> Iterator[_Plate]:
    """Simulate plates in design order until ``limit`` wells have been produced.

    With ``landmarks_only`` the inferred genes are skipped; landmark values are identical.
    ``level=3`` yields the level-3 log2 expression instead of the per-plate robust
    z-scores (in ``_Plate.level4``), for renderings of other platforms.
    """
    cfg = world.config
    perts = world.perts
    cells = world.cells["cell_id"].to_numpy()
    lm_n = N_LANDMARKS
    produced = 0
    baselines: dict[int, np.ndarray] = {}
    potency = perts["potency"].to_numpy()
    ec50 = perts["ec50_um"].to_numpy()
    types = perts["pert_type"].to_numpy()
    self_landmark = perts["self_landmark"].to_numpy()
    self_sign = perts["self_sign"].to_numpy()
    for m_i, pmap in enumerate(maps):
        if produced >= limit:
            return
        if pmap.cell not in baselines:
            baselines[pmap.cell] = _cell_baseline(world, pmap.cell)
        baseline = baselines[pmap.cell]
        early = pmap.time_h in (min(cfg.compound_times_h), min(cfg.genetic_times_h))
        time_amp = cfg.early_amplitude if early else 1.0
        # Signal of each treatment well (identical on the replicate plates of this map).
        pidx = pmap.pert_idx
        is_cp = types[pidx] == "trt_cp"
        hill = np.where(is_cp, pmap.dose / (pmap.dose + ec50[pidx]), 0.8)
        # Off-targets bind less tightly: at a low dose they are less occupied.
        off_ec50 = cfg.off_target_ec50_factor * ec50[pidx]
        off_scale = np.where(is_cp, (pmap.dose / (pmap.dose + off_ec50)) / hill, 1.0)
        directions = world.effects(pidx, pmap.cell, late=not early, off_target_scale=off_scale)
        # Perturbagen x cell line: an idiosyncratic part and a sensitivity (how strongly
        # this line responds to this perturbagen: the first draw of the pair's stream).
        pair_streams = [_rng(cfg.seed, _PAIR, int(p), pmap.cell) for p in pidx]
        sensitivity = np.exp(
            cfg.pert_cell_sensitivity_sd * np.array([g.standard_normal() for g in pair_streams])
        )
        pair = np.stack([g.standard_normal(lm_n) for g in pair_streams]).astype(
            np.float32
        ) / math.sqrt(lm_n)
        directions += cfg.pert_cell_weight * pair
        # ... and a part of each condition (dose and time) of its own: secondary responses
        # come and go with dose and time, and replicates of the condition share them.
        dose_code = np.round(np.asarray(pmap.dose, float) * 1000).astype(np.int64)
        condition = np.stack(
            [
                _rng(cfg.seed, _PAIR, int(p), pmap.cell, int(d), pmap.time_h).standard_normal(lm_n)
                for p, d in zip(pidx, dose_code)
            ]
        ).astype(np.float32) / math.sqrt(lm_n)
        directions += cfg.condition_weight * condition
        resp = world.cell_response[pmap.cell]
        amp = cfg.effect_scale * resp * time_amp * hill * potency[pidx] * sensitivity
        signal = (amp[:, None] * directions * math.sqrt(lm_n)).astype(np.float32)
        # Genetic perturbagens move their own gene's mRNA when it is a landmark.
        own = np.nonzero(self_landmark[pidx] >= 0)[0]
        signal[own, self_landmark[pidx][own]] += (
            self_sign[pidx][own] * cfg.target_knockdown * np.minimum(potency[pidx][own], 2.0)
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
            grad = rng.standard_normal((2, cfg.n_modules)).astype(np.float32) @ world.modules
            gradient = (
                cfg.plate_gradient_sd
                * math.sqrt(lm_n)
                * (np.outer(row_pos, grad[0]) + np.outer(col_pos, grad[1]))
            )
            quality = np.exp(cfg.well_quality_sd * rng.standard_normal(n_w)).astype(np.float32)
            well_noise = rng.standard_t(cfg.well_noise_df, (n_w, lm_n)).astype(np.float32)
            well_noise *= cfg.well_noise_sd
            offset = 0.3 * rng.standard_normal(lm_n).astype(np.float32)
            # A well's technical quality scales all of its noise (structured and its own),
            # so profile norms vary with the well as much as with the perturbagen.
            noise = (structured + well_noise) * quality[:, None]
            # Each well's dynamic range scales its whole deviation from the plate: cosine
            # does not see it, distances do (real profile norms vary widely).
            dynamic = np.exp(cfg.well_range_sd * rng.standard_normal(n_w)).astype(np.float32)
            level3_lm = baseline + offset + gradient + (well_signal + noise) * dynamic[:, None]
            if landmarks_only:
                level3 = level3_lm
            else:
                inferred = (level3_lm @ world.inference_a) @ world.inference_c
                inferred += world.inference_noise_sd * rng.standard_normal(
                    inferred.shape, dtype=np.float32
                )
                level3 = np.concatenate([level3_lm, inferred], axis=1)
            level4 = level3 if level == 3 else _robust_zscore(level3, cfg.mad_floor)

            keep = min(n_w, limit - produced)
            inst = _plate_metadata(world, pmap, rep, cells[pmap.cell])
            yield _Plate(inst.iloc[:keep].reset_index(drop=True), level4[:keep])
            produced += keep


def _plate_metadata(world: World, pmap: _PlateMap, rep: int, cell: str) -> pd.DataFrame:
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
def build_world(config: SyntheticConfig) -> tuple[World, list[_PlateMap]]:
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


def pert_info_table(world: World) -> pd.DataFrame:
    """GEO ``pert_info`` with the real names, SMILES and annotations (``moa``, ``target``),
    controls included. Hidden targets and seeds are not in it (ground truth: ``world``)."""
    controls = pd.DataFrame(
        [
            (
                "DMSO",
                "CS(C)=O",
                "IAZDPXIOMUYVGZ-UHFFFAOYSA-N",
                "DMSO",
                "ctl_vehicle",
                MISSING,
                MISSING,
            ),
            ("CMAP-VEC001", MISSING, MISSING, "EMPTY_VECTOR", "ctl_vector", MISSING, MISSING),
            ("CMAP-UNTRT", MISSING, MISSING, "UnTrt", "ctl_untrt", MISSING, MISSING),
        ],
        columns=PERT_COLUMNS,
    )
    return pd.concat([controls, world.perts[PERT_COLUMNS]], ignore_index=True)


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
            "synthetic": True,
            "note": SYNTHETIC_NOTE,
            "generator": "l1000_assets.core.releases.synthetic",
            "generator_version": GENERATOR_VERSION,
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
    world: World,
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


def simulate(world: World, maps: list[_PlateMap]) -> tuple[pd.DataFrame, np.ndarray]:
    """The ``inst_info`` and level-4 landmark values (N x 978) of a built world, in memory.

    The same values as the landmark rows of :func:`write_synthetic_release`'s GCTX, without
    simulating the inferred genes; for calibration and tests on small releases.
    """
    plates = list(_plates(world, maps, world.config.n_profiles, landmarks_only=True))
    inst = pd.concat([p.inst for p in plates], ignore_index=True)
    return inst, np.concatenate([p.level4 for p in plates])


def simulate_landmark_profiles(config: SyntheticConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """:func:`simulate` of ``config``'s world."""
    return simulate(*build_world(config))


def default_config(**overrides) -> SyntheticConfig:
    """The calibrated default configuration, with ``overrides`` applied."""
    return replace(SyntheticConfig(), **overrides)
