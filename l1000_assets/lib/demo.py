"""``l1000 demo``: the embedded synthetic release through every asset, end to end."""

import os
import sys
import time
from pathlib import Path

import dagster as dg

from l1000_assets.lib.resources import DATA_ROOT_ENV


def load_definitions() -> dg.Definitions:
    from l1000_assets.definitions import defs

    return defs()


def run_demo(data_root: Path, n_profiles: int, seed: int) -> int:
    """Materialize every asset (and run every check) in one run on the Dagster instance.

    The run goes into ``$DAGSTER_HOME`` (the Makefile points it at ``dagster_home/``), so
    it shows in the UI's run history.
    """
    data_root = data_root.resolve()
    os.environ[DATA_ROOT_ENV] = str(data_root)
    if "DAGSTER_HOME" not in os.environ:
        home = Path(__file__).resolve().parents[2] / "dagster_home"
        os.environ["DAGSTER_HOME"] = str(home)
    definitions = load_definitions()
    job = definitions.resolve_implicit_global_asset_job_def()
    run_config = {"ops": {"synthetic_release": {"config": {"n_profiles": n_profiles,
                                                           "seed": seed}}},
                  "loggers": {"console": {"config": {"log_level": "INFO"}}}}
    print(f"l1000 demo: {n_profiles:,} synthetic profiles (seed {seed}) -> {data_root}",
          flush=True)
    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, run_config=run_config,
                                        raise_on_error=False)
    if not result.success:
        print("demo failed: see the errors above (and the run in `make ui`)", file=sys.stderr)
        return 1
    checks = [e.asset_check_evaluation_data for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    print(f"\ndone in {time.perf_counter() - t0:.0f} s (run {result.run_id})")
    print("materialized:")
    for event in result.get_asset_materialization_events():
        mat = event.event_specific_data.materialization
        path = next((v.value for k, v in mat.metadata.items()
                     if isinstance(v, dg.PathMetadataValue)), "")
        print(f"  {mat.asset_key.to_user_string():<28} {path}")
    print("checks:")
    for check in checks:
        status = "passed" if check.passed else f"FAILED ({check.severity.value})"
        print(f"  {check.asset_check_key.name:<40} {status}")
    print(f"\noutputs under {data_root}; run history in {os.environ['DAGSTER_HOME']} "
          "(open it with `make ui`)")
    return 0
