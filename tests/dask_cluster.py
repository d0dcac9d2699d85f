"""A Dask cluster on 127.0.0.1 for the tests and benchmarks: ``dask scheduler`` and one
``dask worker`` process per worker, started as the README's cluster set-up does, and stopped
by PID.

Nothing listens beyond the loopback interface, and no dashboard is started."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).parent / "dask")
START_TIMEOUT_S = 90
STOP_GRACE_S = 10


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after a grace period, by process group (the PID's session)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=STOP_GRACE_S)
            if sig == signal.SIGTERM:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left in its group
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            pass
        proc.wait()
        return


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not alive
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def dask_cluster(workdir: Path, n_workers: int, env: dict, cwd: Path):
    """Yields ``(scheduler address, [scheduler pid, worker pids...])`` of a scheduler and
    ``n_workers`` single-threaded worker processes; stops every one of them by PID after."""
    workdir.mkdir(parents=True, exist_ok=True)
    scheduler_file = workdir / "scheduler.json"
    scheduler_file.unlink(missing_ok=True)
    procs: list[subprocess.Popen] = []
    logs = []

    def start(args, name):
        log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115  (closed below)
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [DASK, *args],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    try:
        start(
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            "scheduler",
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not scheduler_file.exists():
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "scheduler.log").read_text()[-3000:])
            time.sleep(0.2)
        time.sleep(0.2)  # the file is written whole, but give the writer its close
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(n_workers):
            start(
                [
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--name",
                    f"worker-{i}",
                    "--local-directory",
                    str(workdir / f"worker-{i}"),
                ],
                f"worker-{i}",
            )
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(n_workers, timeout=START_TIMEOUT_S)
        yield address, [p.pid for p in procs]
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for log in logs:
            log.close()


LAUNCH_SCRIPT = """
import json, sys, time
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
repo_dir, address, split, config, assets = sys.argv[1:6]
job = ReconstructableRepository.for_module(
    "l1000_assets.definitions", "defs", working_directory=repo_dir
).get_reconstructable_job("split_models_job")
t0 = time.time()
with dg.DagsterInstance.get() as instance:
    result = dg.execute_job(
        job,
        instance=instance,
        run_config={
            "execution": {"config": {"cluster": {"existing": {"address": address}}}},
            "ops": {"embedding_model": {"config": json.loads(config)}},
        },
        tags={"dagster/partition": split},
        asset_selection=[dg.AssetKey(a) for a in json.loads(assets)],
    )
print(json.dumps({"run_id": result.run_id, "success": result.success, "seconds": time.time() - t0}))
"""


def launch_split_runs(
    repo: Path, address: str, splits, model_config: dict, assets, env: dict, timeout: float
) -> dict[str, dict]:
    """One run of ``split_models_job`` per split partition, each from its own process (as
    the daemon launches runs), all at once, against the Dask scheduler at ``address``.
    Returns split -> ``{"run_id", "success", "seconds"}``; the launchers are killed by PID
    if they outlive ``timeout``."""
    procs = {
        split: subprocess.Popen(
            [
                sys.executable,
                "-c",
                LAUNCH_SCRIPT,
                str(repo),
                address,
                split,
                json.dumps(model_config),
                json.dumps(list(assets)),
            ],
            cwd=repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for split in splits
    }
    out = {}
    deadline = time.monotonic() + timeout
    try:
        for split, proc in procs.items():
            stdout, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            lines = [ln for ln in stdout.decode().splitlines() if ln.startswith("{")]
            out[split] = json.loads(lines[-1]) if lines else {"success": False}
    finally:
        for proc in procs.values():
            _stop(proc)
    return out
