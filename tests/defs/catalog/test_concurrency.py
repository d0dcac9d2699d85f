"""One DuckDB writer and one training run at a time, with the repository's dagster.yaml.

Two real runs of ``warehouse`` (the catalog's writer) start in two processes against one
Dagster instance configured by a copy of ``dagster_home/dagster.yaml``. The test holds the
``duckdb`` pool's only slot until both runs are waiting for it, then lets go: the runs must
both succeed, one after the other, never writing the catalog at the same time.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.defs.conftest import build_lake_graph

REPO = Path(__file__).resolve().parents[3]
WAIT_S = 120

RUN_WAREHOUSE = """
import sys
import dagster as dg
from l1000_assets.definitions import defs

d = defs()
with dg.DagsterInstance.get() as instance:
    result = dg.materialize([*d.assets, *d.asset_checks], selection=["warehouse"],
                            instance=instance, resources=d.resources, raise_on_error=False)
print("RUN_ID", result.run_id, flush=True)
sys.exit(0 if result.success else 1)
"""


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # dagster.yaml reads it
    return home


def test_pools_are_configured_for_one_writer_and_one_training_run(home):
    from l1000_assets.definitions import defs

    with dg.DagsterInstance.from_config(str(home)) as instance:
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1
        assert instance.event_log_storage.supports_global_concurrency_limits
    ops = {
        a.key.to_user_string(): a.op
        for a in defs().assets
        if isinstance(a, dg.AssetsDefinition) and len(a.keys) == 1
    }
    assert ops["warehouse"].pool == "duckdb"
    assert ops["embedding_model"].pool == "training"


def _step_window(instance, run_id: str, step: str) -> tuple[float, float]:
    records = instance.all_logs(run_id)
    start = [
        r.timestamp
        for r in records
        if r.dagster_event
        and r.dagster_event.event_type == dg.DagsterEventType.STEP_START
        and r.step_key == step
    ]
    end = [
        r.timestamp
        for r in records
        if r.dagster_event
        and r.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS
        and r.step_key == step
    ]
    assert start and end, f"run {run_id}: no start/success of {step}"
    return start[0], end[0]


def test_two_catalog_writers_are_serialized_not_failed(home, tmp_path):
    graph = build_lake_graph(tmp_path / "graph", n_profiles=1_000, seed=2)
    data = tmp_path / "data"
    shutil.copytree(graph.root / "lake", data / "lake")
    env = {**os.environ, "DAGSTER_HOME": str(home), "L1000_DATA_ROOT": str(data)}

    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default("duckdb")
        assert storage.claim_concurrency_slot("duckdb", "test-holder", "hold").is_claimed
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", RUN_WAREHOUSE],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            deadline = time.monotonic() + WAIT_S
            while storage.get_concurrency_info("duckdb").pending_step_count < 2:
                assert all(p.poll() is None for p in procs), (
                    "a run ended while the test held the duckdb slot: the pool did not hold it"
                )
                assert time.monotonic() < deadline, "the two runs never queued for the slot"
                time.sleep(0.2)
            info = storage.get_concurrency_info("duckdb")
            assert info.active_run_ids == {"test-holder"}
            assert not (data / "catalog").exists()  # nobody has written while blocked
            storage.free_concurrency_slots_for_run("test-holder")
            outputs = [p.communicate(timeout=WAIT_S)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        for p, out in zip(procs, outputs, strict=True):
            assert p.returncode == 0, out[-3000:]
        run_ids = [
            next(line.split()[1] for line in out.splitlines() if line.startswith("RUN_ID"))
            for out in outputs
        ]
        (s1, e1), (s2, e2) = sorted(_step_window(instance, r, "warehouse") for r in run_ids)
        assert e1 <= s2, f"catalog writes overlapped: {s1:.2f}-{e1:.2f} and {s2:.2f}-{e2:.2f}"
        assert storage.get_concurrency_info("duckdb").active_slot_count == 0
    assert (data / "catalog" / "l1000.duckdb").is_file()
