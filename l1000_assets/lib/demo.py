"""``l1000 demo``: the embedded synthetic release through every asset, end to end."""

import os
import sys
import time
from pathlib import Path

import dagster as dg

from l1000_assets.lib.partitions import DEFAULT_SPLITS, missing_partitions, split_partitions
from l1000_assets.lib.resources import DATA_ROOT_ENV

ASSET_PARTITION_RANGE_START = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END = "dagster/asset_partition_range_end"
DEMO_TAG = "l1000/launched_by"


def load_definitions() -> dg.Definitions:
    from l1000_assets.definitions import defs

    return defs()


def _stages(instance: dg.DagsterInstance, data_root: Path | None = None):
    """(title, stage job, partition key, tags) of each run, in dependency order (the jobs of
    ``defs/stages/jobs.py``: the runs show by job name and ``l1000/stage`` tag in the UI).

    Called lazily: later stages see the partitions that earlier stages added, and the
    read-across finds the example profile written from the lake just built, and the
    gene-set queries the example files written from the signature store.
    """
    yield "synthetic release", "synthetic_release_job", None, {}
    yield "release files and metadata", "release_metadata_job", "synthetic", {}
    cells = instance.get_dynamic_partitions("cell_line")
    if cells:
        # One run for all cell lines: landmark_profiles reads each release once.
        yield (
            "landmark lake",
            "landmark_lake_job",
            None,
            {ASSET_PARTITION_RANGE_START: cells[0], ASSET_PARTITION_RANGE_END: cells[-1]},
        )
    # Structures first: the evaluation's drug-level Tanimoto and combo read them.
    yield "compound structures", "structure_job", None, {}
    # Before the models: the evaluation's gene-set protocol reads the signature store.
    yield "gene-set signatures and tau reference", "connectivity_store_job", None, {}
    # One model per split partition: split_0 (20% held out, for the evaluation) and all
    # (every perturbagen trained, the served model). Each run also ranks its split.
    new = missing_partitions(instance, split_partitions, DEFAULT_SPLITS)
    if new:
        instance.add_dynamic_partitions(split_partitions.name, new)
    for split in DEFAULT_SPLITS:
        yield (
            f"embedding model [{split}]",
            "model_job",
            split,
            {},
        )
    yield "evaluation", "evaluation_job", None, {}
    if cells:
        # Partitioned and unpartitioned assets in separate runs; one run for all cell lines.
        yield (
            "embeddings",
            "embeddings_job",
            None,
            {ASSET_PARTITION_RANGE_START: cells[0], ASSET_PARTITION_RANGE_END: cells[-1]},
        )
    yield "embedding aggregates", "embedding_aggregates_job", None, {}
    if data_root is not None:
        print(f"  example query profile: {write_example_query(data_root)}", flush=True)
    yield "read-across", "read_across_job", None, {}
    if data_root is not None:
        _write_example_queries(data_root)
    yield "gene-set queries", "connectivity_job", None, {}
    yield "DuckDB catalog", "catalog_job", None, {}


def write_example_query(data_root: Path) -> Path:
    """``<queries>/my_extract.csv``: the mean profile of the compound with the most lake
    profiles, standing in for a user's own profile (the README's read-across examples)."""
    from l1000_assets.core.readacross.examples import EXAMPLE_NAME, write_example_profile
    from l1000_assets.lib.resources import LakeResource

    lake = LakeResource(root=str(data_root))
    path = lake.queries_dir / f"{EXAMPLE_NAME}.csv"
    write_example_profile(lake.landmark_files(), lake.metadata_files("genes"), path)
    return path


def _write_example_queries(data_root: Path) -> None:
    """Gene-set files from the store's strongest compounds: a GMT in the queries folder
    (scored by connectivity_results) and a GRP pair under examples/ (for `l1000 query`)."""
    from l1000_assets.core.connectivity.examples import write_examples
    from l1000_assets.core.connectivity.results import STORE_DIR
    from l1000_assets.core.connectivity.store import SignatureStore
    from l1000_assets.lib.resources import LakeResource

    lake = LakeResource(root=str(data_root))
    store = SignatureStore(lake.connectivity_dir / STORE_DIR)
    for path in write_examples(store, lake.queries_dir, data_root / "examples"):
        print(f"  example gene sets: {path}", flush=True)


def write_platform_examples(data_root: Path, n_profiles: int, seed: int) -> Path:
    """Example query files of every input kind (RNA-seq counts and sheet, TempO-Seq panel,
    DE table, level-3 plate, z-scores) for three compounds of the demo release, in
    ``<data root>/examples/``."""
    from l1000_assets.core.readacross.platforms.render import write_examples
    from l1000_assets.core.releases.synthetic import build_world, default_config

    world, _ = build_world(default_config(n_profiles=n_profiles, seed=seed))
    perts = world.perts
    compounds = perts.loc[perts["pert_type"] == "trt_cp", "pert_id"].head(3).tolist()
    out = data_root / "examples"
    write_examples(world, compounds, out)
    return out


def run_demo(data_root: Path, n_profiles: int, seed: int) -> int:
    """Materialize every asset (and run every check) on the Dagster instance, stage by stage.

    The runs go into ``$DAGSTER_HOME`` (the Makefile points it at ``dagster_home/``), so they
    show in the UI's run history with all their metadata.
    """
    data_root = data_root.resolve()
    os.environ[DATA_ROOT_ENV] = str(data_root)
    if "DAGSTER_HOME" not in os.environ:
        os.environ["DAGSTER_HOME"] = str(Path(__file__).resolve().parents[2] / "dagster_home")
    definitions = load_definitions()
    run_config = {
        "ops": {"synthetic_release": {"config": {"n_profiles": n_profiles, "seed": seed}}},
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
    }
    print(f"l1000 demo: {n_profiles:,} synthetic profiles (seed {seed}) -> {data_root}", flush=True)
    t0 = time.perf_counter()
    materialized: dict[str, str] = {}
    checks: list[tuple[str, str]] = []
    with dg.DagsterInstance.get() as instance:
        for title, job_name, partition, tags in _stages(instance, data_root):
            print(f"\n== {title} ({job_name})", flush=True)
            config = (
                run_config
                if job_name == "synthetic_release_job"
                else {"loggers": run_config["loggers"]}
            )
            job = definitions.resolve_job_def(job_name)
            result = job.execute_in_process(
                instance=instance,
                partition_key=partition,
                tags={**job.tags, DEMO_TAG: "l1000 demo", **tags},
                run_config=config,
                raise_on_error=False,
            )
            if not result.success:
                print(
                    f"demo failed in stage '{title}': see the errors above and run "
                    f"{result.run_id} in `make ui`",
                    file=sys.stderr,
                )
                return 1
            for event in result.get_asset_materialization_events():
                mat = event.event_specific_data.materialization
                path = next(
                    (v.value for v in mat.metadata.values() if isinstance(v, dg.PathMetadataValue)),
                    "",
                )
                name = mat.asset_key.to_user_string()
                partition = mat.partition
                if partition in DEFAULT_SPLITS:  # one line per split model
                    name = f"{name}[{partition}]"
                materialized[name] = path
            for check in result.get_asset_check_evaluations():
                status = "passed" if check.passed else f"FAILED ({check.severity.value})"
                checks.append((check.check_name, status))
    examples = write_platform_examples(data_root, n_profiles, seed)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s")
    print("materialized:")
    for key, path in materialized.items():
        print(f"  {key:<34} {path}")
    print("checks:")
    for name, status in checks:
        print(f"  {name:<40} {status}")
    table1 = data_root / "lake" / "evaluation" / "table1.md"
    if table1.exists():
        print(
            "\nevaluation on the SYNTHETIC release (laid out like Table 1 of Donner et al. "
            "2018, ours beside the published figures on real L1000):\n"
        )
        print(table1.read_text())
    print(
        f"\nexample query files of other platforms (SYNTHETIC, rendered from the release) in "
        f"{examples}: see the README, 'Queries from other platforms'"
    )
    print(
        f"\noutputs under {data_root}; run history in {os.environ['DAGSTER_HOME']} "
        "(open it with `make ui`)"
    )
    return 0
