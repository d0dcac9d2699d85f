"""The embedded synthetic release: GEO-layout files generated on the machine itself."""

import time

import dagster as dg
from pydantic import Field

from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.info_tables import landmark_gene_ids, read_info_table
from l1000_assets.core.progress import ProgressReporter
from l1000_assets.core.releases.calibration import TARGETS, release_calibration
from l1000_assets.core.releases.local import find_release_files
from l1000_assets.core.releases.reconcile import check_release
from l1000_assets.core.releases.synthetic import (
    SYNTHETIC_NOTE,
    default_config,
    write_synthetic_release,
)
from l1000_assets.lib.keys import RELEASES_GROUP, SYNTHETIC_RELEASE
from l1000_assets.lib.metadata import file_metadata, markdown_preview
from l1000_assets.lib.resources import LakeResource

SYNTHETIC_DIR_NAME = "synthetic"
# The AUCs are checked (stable on one split of a small release); recall at the top ranks
# and the drug level (a few dozen held-out compounds) are reported only: `l1000 calibrate`
# pools splits and seeds for them.
CHECKED_FIGURES = ("same_cosine_auc", "same_euclidean_auc", "replicate_cosine_auc")


class SyntheticReleaseConfig(dg.Config):
    """Size and seed of the synthetic release (the other knobs keep their calibrated defaults)."""

    n_profiles: int = Field(
        default=36_000, ge=100, description="Level-4 profiles to simulate, controls included."
    )
    seed: int = Field(default=0, description="Random seed; the same seed gives the same release.")


@dg.asset(
    key=SYNTHETIC_RELEASE,
    group_name=RELEASES_GROUP,
    kinds={"hdf5", "python"},
    description=(
        "SYNTHETIC: a simulated LINCS L1000 release in GEO GSE92742 layout (level-4 GCTX with "
        "the real 12,328 genes and the inst/gene/pert/cell info tables; real LINCS compounds "
        "with their MOAs, targets and SMILES, shRNAs and cDNAs of real genes, the core cell "
        "lines) with known ground truth. Its profiles are simulated, not biology. Replaced "
        "atomically."
    ),
)
def synthetic_release(
    context: dg.AssetExecutionContext, config: SyntheticReleaseConfig, lake: LakeResource
) -> dg.MaterializeResult:
    synth_config = default_config(n_profiles=config.n_profiles, seed=config.seed)
    target = lake.release_dir(SYNTHETIC_DIR_NAME)
    context.log.info(
        f"simulating {config.n_profiles:,} profiles (seed {config.seed}) into {target}"
    )
    t0 = time.perf_counter()
    write_synthetic_release(
        target, synth_config, progress=ProgressReporter(context.log.info, interval=10.0)
    )
    seconds = time.perf_counter() - t0
    release = find_release_files(target)
    if not context.instance.has_dynamic_partition("release", SYNTHETIC_DIR_NAME):
        context.instance.add_dynamic_partitions("release", [SYNTHETIC_DIR_NAME])
        context.log.info(f"added release partition {SYNTHETIC_DIR_NAME!r}")
    pert_info = read_info_table(release.pert_info)
    return dg.MaterializeResult(
        metadata={
            "synthetic": True,
            "note": SYNTHETIC_NOTE,
            "release_dir": dg.MetadataValue.path(str(target)),
            **{f"level4_{k}": v for k, v in file_metadata(release.level4).items()},
            "dagster/row_count": config.n_profiles,
            "n_genes": 12_328,
            "n_perturbagens": int((~pert_info["pert_type"].str.startswith("ctl")).sum()),
            "n_moas": int(pert_info["moa"].dropna().str.split("|").explode().nunique()),
            "seed": config.seed,
            "seconds": round(seconds, 1),
            "profiles_per_second": round(config.n_profiles / seconds),
            "pert_info_preview": markdown_preview(pert_info.iloc[3:]),
        },
        data_version=dg.DataVersion(f"synthetic-n{config.n_profiles}-seed{config.seed}"),
    )


@dg.asset_check(
    asset=SYNTHETIC_RELEASE,
    blocking=True,
    description="Matrix ids and metadata ids agree; 978 landmarks present.",
)
def synthetic_release_files_consistent(lake: LakeResource) -> dg.AssetCheckResult:
    try:
        counts = check_release(find_release_files(lake.release_dir(SYNTHETIC_DIR_NAME)))
    except L1000InputError as exc:
        return dg.AssetCheckResult(passed=False, metadata={"error": str(exc)})
    return dg.AssetCheckResult(passed=True, metadata=counts)


@dg.asset_check(
    asset=SYNTHETIC_RELEASE,
    description=(
        "Difficulty like real L1000: the z-score baselines on held-out perturbagens (one "
        "split, read back from the written GCTX, subsampled to about 20,000 profiles): the "
        "AUCs of same-perturbagen cosine and Euclidean and of biological replicates within "
        "the bands around the published figures; the other figures reported beside them."
    ),
)
def synthetic_release_calibrated(lake: LakeResource) -> dg.AssetCheckResult:
    release = find_release_files(lake.release_dir(SYNTHETIC_DIR_NAME))
    inst = read_info_table(release.inst_info, id_column="inst_id")
    pert_info = read_info_table(release.pert_info, id_column="pert_id")
    landmarks = landmark_gene_ids(read_info_table(release.gene_info))
    result = release_calibration(release.level4, inst, pert_info, landmarks)
    outside = [k for k in result.outside_band() if k in CHECKED_FIGURES]
    table = "\n".join(
        f"| {TARGETS[k].label} | {TARGETS[k].paper} | {v:.3f} |" for k, v in result.figures.items()
    )
    return dg.AssetCheckResult(
        passed=not outside,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "synthetic": True,
            "zscore_cosine_auc": round(result.figures["same_cosine_auc"], 4),
            **{k: round(v, 4) for k, v in result.figures.items()},
            "outside_band": ", ".join(outside) or "none",
            "figures": dg.MetadataValue.md(
                "SYNTHETIC release\n\n| figure | paper (real L1000) | synthetic |\n|---|---|---|\n"
                + table
            ),
        },
    )
