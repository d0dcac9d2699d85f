"""Two split models materialized through Dagster's Dask executor on a Dask cluster of two
worker processes on 127.0.0.1, started and stopped by the test."""

import os
import shutil
import time
from pathlib import Path

import dagster as dg

from tests.dask_cluster import alive, dask_cluster, launch_split_runs

REPO = Path(__file__).resolve().parents[3]
# As test_model_assets.SMALL_MODEL: fewer steps do not pass the blocking check.
TINY = {"depth": 4, "growth": 16, "steps": 1000, "checkpoint_every": 250, "batch_size": 256}
RUN_TIMEOUT_S = 300
SPLITS = ["split_7", "split_8"]
MODEL_ASSETS = ["perturbagen_split", "normalization_stats", "embedding_model"]


def _failures(instance, run_id):
    if not run_id:
        return "the run did not start"
    return [
        (e.step_key, str(e.dagster_event.event_specific_data.error)[:1500])
        for e in instance.all_logs(run_id)
        if e.is_dagster_event
        and e.dagster_event.event_type_value in ("STEP_FAILURE", "RUN_FAILURE")
    ]


def persistent_instance(tmp_path: Path, monkeypatch) -> dg.DagsterInstance:
    """A throwaway instance with the repository's dagster.yaml (SQLite storage, pools)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.from_config(str(home)), home


def test_two_split_models_through_the_dask_executor(lake_graph, tmp_path, monkeypatch):
    monkeypatch.setenv("L1000_DATA_ROOT", str(lake_graph.root))
    instance, home = persistent_instance(tmp_path, monkeypatch)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "L1000_DATA_ROOT": str(lake_graph.root),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    with instance:
        instance.add_dynamic_partitions("split", SPLITS)
        # The training pool's limit (1 in dagster.yaml) raised to the cluster's two workers.
        instance.event_log_storage.set_concurrency_slots("training", 2)
        t0 = time.perf_counter()
        with dask_cluster(tmp_path / "dask", 2, env, REPO) as (address, pids):
            assert address.startswith("tcp://127.0.0.1:")
            scheduler, workers = pids[0], pids[1:]
            results = launch_split_runs(
                REPO, address, SPLITS, TINY, MODEL_ASSETS, env, RUN_TIMEOUT_S
            )
            print(f"two split models on two Dask workers: {time.perf_counter() - t0:.0f} s")
            assert set(results) == set(SPLITS)
            step_pids = set()
            for split, result in results.items():
                assert result["success"], (split, _failures(instance, result.get("run_id")))
                run = instance.get_run_by_id(result["run_id"])
                assert run.tags["dagster/partition"] == split
                assert run.job_name == "split_models_job"
                events = instance.all_logs(result["run_id"])
                steps = [e for e in events if e.is_dagster_event and e.dagster_event.is_step_start]
                assert {e.step_key for e in steps} == {
                    *MODEL_ASSETS,
                    "embedding_model_embedding_model_beats_zscore",
                }
                step_pids |= {e.dagster_event.pid for e in steps}
                materialized = {
                    e.dagster_event.asset_key.to_user_string()
                    for e in events
                    if e.is_dagster_event and e.dagster_event.is_step_materialization
                }
                assert materialized == set(MODEL_ASSETS)
            # Every step ran in a Dask worker process, and both workers were used.
            assert step_pids == set(workers)
        assert not any(alive(p) for p in [scheduler, *workers])
    for split in SPLITS:
        card = lake_graph.root / "models" / "embedding_model" / split / "card.json"
        assert f'"split": "{split}"' in card.read_text()
        shutil.rmtree(card.parent)  # leave the shared lake as the other tests expect
