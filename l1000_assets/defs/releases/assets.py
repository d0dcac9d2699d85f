"""Release files and their canonical metadata, one partition per release."""

import hashlib
import json
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from pydantic import Field

from l1000_assets.core.atomic import atomic_dir, atomic_file
from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.lake.read import read_canonical_landmarks
from l1000_assets.core.lake.validate import shrinkage
from l1000_assets.core.progress import ProgressReporter
from l1000_assets.core.releases.local import open_release
from l1000_assets.core.releases.reconcile import STRICT, reconcile
from l1000_assets.core.releases.registry import DATED_NAME, ReleaseSource
from l1000_assets.core.releases.summary import profiles_plot_png
from l1000_assets.core.releases.watch import fingerprint
from l1000_assets.lib.keys import (
    RELEASE_FILES,
    RELEASE_METADATA,
    RELEASES_GROUP,
    SYNTHETIC_RELEASE,
)
from l1000_assets.lib.lake import read_metadata
from l1000_assets.lib.metadata import parquet_column_schema, png_markdown, table_preview
from l1000_assets.lib.partitions import (
    cell_line_partitions,
    release_partitions,
    valid_cell_line,
)
from l1000_assets.lib.releases import (
    ReleaseRegistry,
    local_name,
    release_file_names,
    release_root,
    release_source,
)
from l1000_assets.lib.resources import LakeResource

METADATA_TABLES = ("instances", "genes", "perturbagens", "cell_lines")


def _local_files(source: ReleaseSource, context: dg.AssetExecutionContext) -> dict[str, dict]:
    root = Path(source.path)
    if not root.is_dir():
        raise dg.Failure(f"{root}: release directory not found (release {source.name})")
    out = {}
    for path in sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")):
        stat = path.stat()
        out[path.name] = {
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "sha256": fingerprint(path),
        }
        context.log.info(f"{path.name}: {stat.st_size:,} bytes")
    return out


def _http_files(
    source: ReleaseSource,
    target: Path,
    registry: ReleaseRegistry,
    context: dg.AssetExecutionContext,
) -> dict[str, dict]:
    from l1000_assets.core.releases.download import download, parse_checksums

    checksums: dict[str, str] = {}
    if "checksums" in source.files:
        result = download(
            source.url("checksums"),
            target / local_name(source.files["checksums"]),
            retries=registry.retries,
            timeout=registry.timeout_seconds,
        )
        checksums = parse_checksums(result.path)
    out = {}
    for role, name in source.files.items():
        if role == "checksums":
            continue
        dest = target / local_name(name)
        context.log.info(f"{role}: {source.url(role)} -> {dest}")
        result = download(
            source.url(role),
            dest,
            sha512=checksums.get(name),
            retries=registry.retries,
            timeout=registry.timeout_seconds,
            progress=ProgressReporter(
                lambda m, n=dest.name: context.log.info(f"{n}: {m}"), what="bytes", interval=30.0
            ),
        )
        context.log.info(
            f"{dest.name}: {'unchanged, skipped' if result.skipped else 'downloaded'}"
            f" ({result.size:,} bytes)"
        )
        dated = DATED_NAME.search(name)
        out[dest.name] = {
            "size": result.size,
            "sha256": result.sha256,
            "url": result.url,
            "etag": result.etag,
            "last_modified": result.last_modified,
            "dated_name": dated.group(1) if dated else None,
            "sha512_checked": name in checksums,
        }
    return out


@dg.asset(
    key=RELEASE_FILES,
    group_name=RELEASES_GROUP,
    partitions_def=release_partitions,
    deps=[SYNTHETIC_RELEASE],
    kinds={"hdf5", "http"},
    description=(
        "The files of one LINCS release (level-4 GCTX and info tables): downloaded over "
        "HTTP(S) with resume, retries, gunzip and checksum checks for the public releases, "
        "fingerprinted in place for local directories. Unchanged files are skipped. The data "
        "version is a hash of every file's size, hash and source version signal."
    ),
)
def release_files(
    context: dg.AssetExecutionContext, lake: LakeResource, releases: ReleaseRegistry
) -> dg.MaterializeResult:
    source = release_source(context.partition_key, releases, lake)
    root = release_root(source, lake)
    if source.kind == "http":
        root.mkdir(parents=True, exist_ok=True)
        files = _http_files(source, root, releases, context)
    else:
        files = _local_files(source, context)
    manifest = {"release": source.name, "kind": source.kind, "root": str(root), "files": files}
    version = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
    out = lake.release_manifest_path(source.name)
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2))
    table = pd.DataFrame(
        [
            {"file": k, **{f: v.get(f) for f in ("size", "sha256", "etag", "last_modified")}}
            for k, v in files.items()
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "release": source.name,
            "source": source.description,
            "root": dg.MetadataValue.path(str(root)),
            "n_files": len(files),
            "total_mb": round(sum(f["size"] for f in files.values()) / 1e6, 1),
            "files": table_preview(table, rows=len(table)),
        },
        data_version=dg.DataVersion(version),
    )


class ReleaseMetadataConfig(dg.Config):
    on_bad_input: Literal["strict", "skip"] = Field(
        default=STRICT,
        description=(
            "strict: any disagreement between matrix and metadata fails the run; "
            "skip: drop the offending ids and report them in the metadata."
        ),
    )
    allow_shrink: bool = Field(
        default=False,
        description=(
            "Accept a version with no treatment profiles, or with fewer than half the "
            "treatment profiles the lake holds for this release (refused by default: it "
            "would replace the release's good canonical tables)."
        ),
    )
    strict_schema: bool = Field(
        default=False,
        description=(
            "Fail when inst_info lacks an optional canonical column (pert_iname, pert_dose, "
            "pert_dose_unit, pert_time, pert_time_unit, a plate) or leaves it empty in every "
            "row; by default that is a warning recorded in the metadata (schema_warnings)."
        ),
    )


def _lake_landmarks(lake: LakeResource, release: str) -> tuple[list[str] | None, str]:
    """The landmark genes of another release in the lake, to name the genes behind a wrong
    landmark count; None when there is none."""
    for other in lake.metadata_releases():
        if other != release:
            try:
                return read_canonical_landmarks(lake.metadata_dir(other) / "genes.parquet"), (
                    f"release {other} in the lake"
                )
            except L1000InputError:
                continue
    return None, "the lake"


def _treatment_count(instances: pd.Series) -> int:
    return int((instances.astype("string") != "control").fillna(True).sum())


def _shrink_problems(lake: LakeResource, release: str, instances: pd.DataFrame) -> list[str]:
    """Why this version of ``release`` would erase good data: no treatment profiles, or
    fewer than half the treatment profiles of its canonical tables in the lake."""
    treated = _treatment_count(instances["profile_class"])
    if treated == 0:
        return [
            f"no treatment profiles: {len(instances):,} profile(s), "
            f"{len(instances) - treated:,} of them controls"
        ]
    held = lake.metadata_dir(release) / "instances.parquet"
    if not held.exists():
        return []
    before = _treatment_count(
        pq.read_table(held, columns=["profile_class"]).to_pandas()["profile_class"]
    )
    return [
        f"{now:,} treatment profiles against {was:,} in the lake ({held}): more than half gone"
        for was, now in shrinkage({release: before}, {release: treated}).values()
    ]


@dg.asset(
    key=RELEASE_METADATA,
    group_name=RELEASES_GROUP,
    partitions_def=release_partitions,
    deps=[RELEASE_FILES],
    kinds={"parquet", "pandas"},
    description=(
        "Canonical metadata of one release as Parquet: instances (one row per profile, with "
        "profile_class control/compound/genetic/other), genes (landmarks first, in the lake's "
        "vector order), perturbagens (MOA/target where known) and cell_lines. Adds the "
        "release's cell lines as cell_line partitions. A version with no treatment profiles, "
        "or fewer than half those the lake holds, is refused unless allow_shrink."
    ),
)
def release_metadata(
    context: dg.AssetExecutionContext,
    config: ReleaseMetadataConfig,
    lake: LakeResource,
    releases: ReleaseRegistry,
) -> dg.MaterializeResult:
    source = release_source(context.partition_key, releases, lake)
    reference_landmarks, reference = _lake_landmarks(lake, source.name)
    try:
        release = open_release(
            source.name,
            release_root(source, lake),
            release_file_names(source),
            reference_landmarks=reference_landmarks,
            reference=reference,
        )
        rec = reconcile(release, on_bad_input=config.on_bad_input)
    except L1000InputError as exc:
        raise dg.Failure(str(exc)) from exc
    for warning in release.schema_warnings:
        context.log.warning(warning)
    if release.schema_warnings and config.strict_schema:
        raise dg.Failure(
            f"release {source.name}: schema drift (strict_schema): "
            + " | ".join(release.schema_warnings)
        )
    instances = release.instances[release.instances["inst_id"].isin(rec.instances["inst_id"])]
    shrink = _shrink_problems(lake, source.name, instances)
    if shrink and not config.allow_shrink:
        raise dg.Failure(
            f"release {source.name}: this version was refused, the lake's canonical tables "
            f"are kept: {'; '.join(shrink)}. If this version is right, set allow_shrink: true "
            "in the run config of release_metadata (and of landmark_profiles)."
        )
    for problem in shrink:
        context.log.warning(f"release {source.name}: allowed (allow_shrink): {problem}")
    tables = {
        "instances": instances,
        "genes": release.genes,
        "perturbagens": release.perturbagens,
        "cell_lines": release.cell_lines,
    }
    with atomic_dir(lake.metadata_dir(source.name)) as tmp:
        for name, df in tables.items():
            df.to_parquet(tmp / f"{name}.parquet", index=False)
    cells = sorted(
        instances.loc[instances["profile_class"] != "control", "cell_id"].dropna().unique()
    )
    invalid = [c for c in cells if not valid_cell_line(c)]
    if invalid:
        context.log.warning(f"cell line names not usable as partition keys, skipped: {invalid}")
    new = [
        c
        for c in cells
        if valid_cell_line(c)
        and not context.instance.has_dynamic_partition(cell_line_partitions.name, c)
    ]
    if new:
        context.instance.add_dynamic_partitions(cell_line_partitions.name, new)
        context.log.info(f"added cell_line partitions: {new}")
    counts = instances["profile_class"].value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(instances),
            "metadata_dir": dg.MetadataValue.path(str(lake.metadata_dir(source.name))),
            "n_genes": len(release.genes),
            "n_perturbagens": len(release.perturbagens),
            "n_cell_lines": len(cells),
            **{f"n_{k}": int(v) for k, v in counts.items()},
            "on_bad_input": config.on_bad_input,
            **{k: v for k, v in rec.report().items()},
            "schema_warnings": dg.MetadataValue.md(
                "\n".join(f"- {w}" for w in release.schema_warnings) or "none"
            ),
            "shrink_allowed": "; ".join(shrink) or "none",
            "profiles_plot": png_markdown(profiles_plot_png(instances), "profiles per cell line"),
            "instances_preview": table_preview(instances),
            # The instances table is the asset's table; the three others' schemas beside it.
            "dagster/column_schema": parquet_column_schema(
                lake.metadata_dir(source.name) / "instances.parquet"
            ),
            **{
                f"{name}_schema": dg.MetadataValue.table_schema(
                    parquet_column_schema(lake.metadata_dir(source.name) / f"{name}.parquet")
                )
                for name in ("genes", "perturbagens", "cell_lines")
            },
        },
    )


@dg.asset_check(
    asset=RELEASE_METADATA,
    blocking=True,
    description="Unique inst_id in every release; every profile classified.",
)
def release_metadata_valid(lake: LakeResource) -> dg.AssetCheckResult:
    problems, n = [], 0
    for release in lake.metadata_releases():
        inst = read_metadata(lake, release, "instances")
        n += len(inst)
        dup = inst["inst_id"][inst["inst_id"].duplicated()]
        if len(dup):
            problems.append(f"{release}: {len(dup)} duplicate inst_id, e.g. {dup.iloc[0]}")
        if inst["profile_class"].isna().any():
            problems.append(f"{release}: unclassified profiles")
    return dg.AssetCheckResult(
        passed=not problems, metadata={"n_instances": n, "problems": "; ".join(problems)}
    )
