"""The landmark lake: 978 landmark z-scores of every non-control profile, per cell line."""

import contextlib
from typing import Literal

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from l1000_assets.core.atomic import atomic_dir
from l1000_assets.core.errors import L1000InputError, preview_ids
from l1000_assets.core.lake.ingest import write_landmark_profiles_from_metadata
from l1000_assets.core.lake.read import (
    iter_profile_batches,
    landmark_matrix,
    read_canonical_instances,
    read_canonical_landmarks,
    read_profile_gene_ids,
)
from l1000_assets.core.lake.schema import N_LANDMARKS
from l1000_assets.core.lake.validate import duplicate_inst_ids, metadata_mismatch, shrinkage
from l1000_assets.core.progress import ProgressReporter
from l1000_assets.core.releases.local import find_matrix
from l1000_assets.core.releases.reconcile import STRICT
from l1000_assets.lib.keys import (
    ALL_PARTITIONS,
    LAKE_GROUP,
    LANDMARK_PROFILES,
    RELEASE_METADATA,
)
from l1000_assets.lib.lake import read_metadata
from l1000_assets.lib.metadata import parquet_column_schema, partition_row_counts, table_preview
from l1000_assets.lib.partitions import cell_line_partitions
from l1000_assets.lib.releases import (
    ReleaseRegistry,
    release_file_names,
    release_root,
    release_source,
)
from l1000_assets.lib.resources import LakeResource


class LandmarkProfilesConfig(dg.Config):
    block_size: int = Field(
        default=8192,
        ge=64,
        description=(
            "Profiles read from the GCTX per block (memory ~4 KB each when the landmark rows "
            "are contiguous in the file, up to ~50 KB when they are spread over all genes)."
        ),
    )
    on_bad_input: Literal["strict", "skip"] = Field(
        default=STRICT, description="As for release_metadata: fail, or drop and report."
    )
    allow_non_zscores: bool = Field(
        default=False,
        description=(
            "Ingest a matrix that plainly is not level-4 z-scores (no negative value, only "
            "whole numbers, or a median far from 0: level 3, counts) instead of refusing it."
        ),
    )
    allow_shrink: bool = Field(
        default=False,
        description=(
            "Accept writing a cell line's file of a release with fewer than half the profiles "
            "the lake holds there (refused by default: it would replace good files)."
        ),
    )
    writer: Literal["fast", "pyarrow"] = Field(
        default="fast",
        description=(
            "Parquet writer of the lake files. fast: the landmark column written as plain "
            "pages directly (several times faster); pyarrow: pyarrow's own writer (PLAIN, "
            "up to 8,192-row groups, data pages v2), slower and holding each cell line's "
            "open row group (up to 32 MB each, 512 MB in all), for if a Parquet change ever "
            "breaks the fast one. Both files read back the same."
        ),
    )


@dg.asset(
    key=LANDMARK_PROFILES,
    group_name=LAKE_GROUP,
    partitions_def=cell_line_partitions,
    deps=[dg.AssetDep(RELEASE_METADATA, partition_mapping=ALL_PARTITIONS)],
    backfill_policy=dg.BackfillPolicy.single_run(),
    kinds={"parquet", "hdf5"},
    description=(
        "Landmark profiles of one cell line from every release that has it: only the 978 "
        "landmark rows of each level-4 GCTX are read, in column blocks; controls are dropped; "
        "metadata joined from release_metadata's canonical tables; one Parquet file per "
        "release under cell_id=<line>/ with the values as a fixed-size float32[978] column "
        "in the genes table's order. Several cell lines in one run share a single pass over "
        "each release. Replaced atomically."
    ),
)
def landmark_profiles(
    context: dg.AssetExecutionContext,
    config: LandmarkProfilesConfig,
    lake: LakeResource,
    releases: ReleaseRegistry,
) -> dg.MaterializeResult:
    cells = list(context.partition_keys)
    # Every key checked (and its directory kept under the lake) before anything is written.
    cell_dirs = {c: lake.landmark_dir(c) for c in cells}
    held = {
        f"{c}/{f.stem}": pq.read_metadata(f).num_rows
        for c, d in cell_dirs.items()
        for f in sorted(d.glob("*.parquet"))
    }
    written: dict[str, dict[str, int]] = {c: {} for c in cells}
    removed: dict[str, int] = dict.fromkeys(cells, 0)
    skipped: dict[str, dict[str, object]] = {}
    with contextlib.ExitStack() as stack:
        tmp_dirs = {c: stack.enter_context(atomic_dir(d)) for c, d in cell_dirs.items()}
        for name in lake.metadata_releases():
            # release_metadata already parsed and matched this release: read its canonical
            # tables, and from the matrix only the column ids and the landmark rows.
            inst_path = lake.metadata_dir(name) / "instances.parquet"
            try:
                inst = read_canonical_instances(inst_path)
                present = set(pc.unique(inst["cell_id"]).to_pylist())
                here = [c for c in cells if c in present]
                if not here:
                    continue
                source = release_source(name, releases, lake)
                matrix = find_matrix(release_root(source, lake), release_file_names(source))
                context.log.info(f"{name}: {len(here)} cell line(s), reading {matrix}")
                report = write_landmark_profiles_from_metadata(
                    matrix,
                    inst,
                    read_canonical_landmarks(lake.metadata_dir(name) / "genes.parquet"),
                    {c: tmp_dirs[c] / f"{name}.parquet" for c in here},
                    release=name,
                    metadata_path=inst_path,
                    on_bad_input=config.on_bad_input,
                    block_size=config.block_size,
                    writer=config.writer,
                    allow_non_zscores=config.allow_non_zscores,
                    progress=ProgressReporter(
                        lambda m, n=name: context.log.info(f"{n}: {m}"), interval=10.0
                    ),
                )
            except L1000InputError as exc:
                raise dg.Failure(str(exc)) from exc
            if report.n_skipped:
                context.log.warning(f"{name}: skipped ids: {report.reconciliation}")
                skipped[name] = report.reconciliation
            for c in here:
                written[c][name] = report.rows_written[c]
                removed[c] += report.controls_removed[c]
        # Still inside the swap: a refusal leaves every cell line's files as they were.
        shrunk = shrinkage(
            held, {f"{c}/{r}": n for c, per in written.items() for r, n in per.items()}
        )
        problems = [
            f"{key.replace('/', ', release ')}: {now:,} profiles against {was:,} in the lake"
            for key, (was, now) in shrunk.items()
        ]
        if problems and not config.allow_shrink:
            raise dg.Failure(
                "refused to replace landmark profiles with fewer than half of those in the "
                f"lake (the lake's files are kept): cell line {'; cell line '.join(problems)}. "
                "If the release's new version is right, set allow_shrink: true in the run "
                "config of landmark_profiles."
            )
        for problem in problems:
            context.log.warning(f"allowed (allow_shrink): cell line {problem}")
    rows = pd.DataFrame(
        [
            {"cell_id": c, "release": r, "profiles": n}
            for c, per in written.items()
            for r, n in per.items()
        ]
    )
    partition_row_counts(context, {c: sum(per.values()) for c, per in written.items()})
    files = [f for c in cells for f in sorted(cell_dirs[c].glob("*.parquet"))]
    return dg.MaterializeResult(
        metadata={
            "rows_in_run": int(rows["profiles"].sum()) if len(rows) else 0,
            "cell_lines": len(cells),
            "controls_removed": int(sum(removed.values())),
            "writer": config.writer,
            "skipped_ids": dg.MetadataValue.json(skipped),
            "shrink_allowed": "; ".join(problems) or "none",
            "profiles_per_cell_line": table_preview(rows, rows=len(rows)) if len(rows) else "none",
            "lake_dir": dg.MetadataValue.path(str(lake.landmark_profiles_dir)),
            **({"dagster/column_schema": parquet_column_schema(files[0])} if files else {}),
        }
    )


@dg.asset_check(
    asset=LANDMARK_PROFILES,
    blocking=True,
    description="Every lake file has the 978 landmarks in the genes table's order, "
    "no NaN/inf values and unique inst_id.",
)
def landmark_profiles_valid(lake: LakeResource) -> dg.AssetCheckResult:
    problems = []
    files = lake.landmark_files()
    orders: dict[tuple, list[str]] = {}
    for path in files:
        release = path.stem
        genes = read_metadata(lake, release, "genes")
        expected = genes.loc[genes["is_landmark"], "gene_id"].tolist()
        recorded = read_profile_gene_ids(path)
        orders.setdefault(tuple(recorded), []).append(release)
        if len(recorded) != N_LANDMARKS or recorded != expected:
            problems.append(f"{path}: landmark order differs from genes.parquet")
        for batch in iter_profile_batches([path], columns=["landmarks"]):
            x = landmark_matrix(batch)
            if x.shape[1] != N_LANDMARKS or not np.isfinite(x).all():
                problems.append(f"{path}: non-finite values or wrong width")
                break
    if len(orders) > 1:
        # One model reads every file: all releases must share one landmark gene list.
        groups = [sorted(set(r)) for r in orders.values()]
        problems.append(
            f"{len(orders)} different landmark gene lists across the lake "
            f"(releases {' vs '.join(', '.join(g) for g in groups[:3])})"
        )
    ids = duplicate_inst_ids(files)
    if ids.n_duplicates:
        problems.append(
            f"{ids.n_duplicates} duplicate inst_id across the lake: {preview_ids(ids.examples)}"
        )
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "n_files": len(files),
            "n_profiles": ids.n_rows,
            "problems": "; ".join(problems[:5]) or "none",
        },
    )


@dg.asset_check(
    asset=LANDMARK_PROFILES,
    blocking=True,
    description="Every lake profile has metadata and every non-control metadata "
    "row of a cell line in the lake has a profile.",
)
def landmark_profiles_match_metadata(lake: LakeResource) -> dg.AssetCheckResult:
    problems = []
    files = lake.landmark_files()
    by_release: dict[str, list] = {}
    for path in files:
        by_release.setdefault(path.stem, []).append(path)
    cells_in_lake = sorted({p.parent.name.split("=", 1)[1] for p in files})
    for release, paths in by_release.items():
        instances = lake.metadata_dir(release) / "instances.parquet"
        problems += metadata_mismatch(release, paths, instances, cells_in_lake).problems()
    return dg.AssetCheckResult(
        passed=not problems, metadata={"problems": "; ".join(problems) or "none"}
    )
