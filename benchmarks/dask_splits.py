"""Benchmark: split models trained side by side on a Dask cluster of two workers against one.

One run of ``split_models_job`` per split partition (model stage: split, statistics, model;
launched at once, as a backfill does), through Dagster's Dask executor against a Dask cluster
on 127.0.0.1 started by the script: first with one worker process (the runs' steps queue for
it), then with two (one model per worker), on the same synthetic lake, in one run of the
script. Prints the wall time of each pair, the ratio, and the machine's load average before
and after (``os.getloadavg``), since other work on the machine moves the figures.

Usage: ``python benchmarks/dask_splits.py [--profiles 6000] [--steps 1000] [--dir /tmp/x]``
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.dask_cluster import dask_cluster, launch_split_runs  # noqa: E402
from tests.defs.conftest import build_lake_graph  # noqa: E402

MODEL_ASSETS = ["perturbagen_split", "normalization_stats", "embedding_model"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=6000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    import dagster as dg

    work = Path(tempfile.mkdtemp(dir=args.dir, prefix="dask-splits-"))
    try:
        root = work / "data"
        home = work / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
        os.environ.update({"DAGSTER_HOME": str(home), "L1000_DATA_ROOT": str(root)})
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        print(f"synthetic lake of {args.profiles:,} profiles in {root} ...", flush=True)
        build_lake_graph(root, args.profiles, seed=3)
        model = {"depth": 16, "growth": 32, "steps": args.steps, "checkpoint_every": 250}
        print(
            f"model: the demo configuration (depth 16, growth 32, batch 512), {args.steps:,} "
            f"steps; CPUs: {os.cpu_count()}",
            flush=True,
        )
        seconds = {}
        with dg.DagsterInstance.from_config(str(home)) as instance:
            instance.event_log_storage.set_concurrency_slots("training", 2)
            for n_workers, splits in ((1, ["split_1", "split_2"]), (2, ["split_3", "split_4"])):
                instance.add_dynamic_partitions("split", splits)
                load = os.getloadavg()[0]
                with dask_cluster(work / f"dask-{n_workers}", n_workers, env, REPO) as (
                    address,
                    _,
                ):
                    t0 = time.perf_counter()
                    results = launch_split_runs(
                        REPO, address, splits, model, MODEL_ASSETS, env, 3600
                    )
                    seconds[n_workers] = time.perf_counter() - t0
                failed = [s for s, r in results.items() if not r.get("success")]
                if failed:
                    raise SystemExit(f"runs failed: {failed}")
                runs = ", ".join(f"{s} {r['seconds']:.0f} s" for s, r in results.items())
                print(
                    f"{n_workers} worker(s): 2 split models in {seconds[n_workers]:6.1f} s "
                    f"(runs: {runs}); load average {load:.2f} before, "
                    f"{os.getloadavg()[0]:.2f} after",
                    flush=True,
                )
        print(f"two workers against one: {seconds[1] / seconds[2]:.2f}x faster")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
