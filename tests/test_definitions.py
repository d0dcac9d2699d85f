"""The code location loads: in-process, without heavy imports, under ``dg check defs``, and
served by ``dg dev``.

The ``dg`` tests run the real command line against a throwaway instance (a copy of
``dagster_home/dagster.yaml`` in a temp ``DAGSTER_HOME``) and an empty temp data root, so they
never touch the repository's run history or data.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[1]
DG = str(Path(sys.executable).parent / "dg")

ASSET = "synthetic_release"
CHECKS = {"synthetic_release_files_consistent", "synthetic_release_calibrated"}

SERVER_START_TIMEOUT_S = 90
# `dg dev` shuts down cleanly on SIGTERM in 3-5 s (the daemon polls its shutdown pipe), so
# allow a little more before SIGKILL. If pytest was started with SIGINT ignored (a background
# job of a non-interactive shell), dagster maps SIGTERM to that ignored handler and only the
# SIGKILL stops it.
SHUTDOWN_GRACE_S = 10
ASSET_KEYS_QUERY = "{ assetNodes { assetKey { path } } }"


@pytest.fixture
def isolated_env(tmp_path):
    """Environment for subprocesses: a throwaway Dagster instance and data root."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    data_root = tmp_path / "data"
    data_root.mkdir()
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "L1000_DATA_ROOT": str(data_root),
        # As if the venv were activated: otherwise dg warns that the active venv (none)
        # differs from the project's.
        "VIRTUAL_ENV": sys.prefix,
    }


def test_definitions_load_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("L1000_DATA_ROOT", str(tmp_path))
    from l1000_assets.definitions import defs

    definitions = defs()
    graph = definitions.resolve_asset_graph()
    assert dg.AssetKey(ASSET) in graph.get_all_asset_keys()
    assert CHECKS <= {key.name for key in graph.asset_check_keys}
    assert "lake" in definitions.resources
    for spec in definitions.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        assert spec.description, f"{name} has no description"
        # Dagster puts an asset without a group into "default"; every asset here names its own.
        assert spec.group_name and spec.group_name != "default", f"{name} has no group"


def _modules_after(code: str, env: dict[str, str]) -> set[str]:
    """Run ``code`` in a fresh interpreter; return the names in its ``sys.modules`` afterwards."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_loading_definitions_does_not_import_tensorflow(isolated_env):
    # The UI and `dg check` load the code location often; TensorFlow belongs in the runs only.
    modules = _modules_after("from l1000_assets.definitions import defs\ndefs()", isolated_env)
    assert "dagster" in modules
    assert "tensorflow" not in modules


# The Keras network itself must import TensorFlow; every other core module imports it lazily.
KERAS_MODULES = {"l1000_assets.core.model.network"}


def test_core_imports_neither_dagster_nor_tensorflow(isolated_env):
    code = (
        "import importlib, pkgutil\n"
        "import l1000_assets.core as core\n"
        "for module in pkgutil.walk_packages(core.__path__, core.__name__ + '.'):\n"
        f"    if module.name not in {sorted(KERAS_MODULES)!r}:\n"
        "        importlib.import_module(module.name)"
    )
    modules = _modules_after(code, isolated_env)
    assert "l1000_assets.core.formats.gctx" in modules  # the walk did import the package's modules
    assert "l1000_assets.core.model.training" in modules
    assert "dagster" not in modules
    assert "tensorflow" not in modules
    assert "keras" not in modules


def test_keras_modules_import_no_dagster(isolated_env):
    modules = _modules_after("\n".join(f"import {m}" for m in KERAS_MODULES), isolated_env)
    assert "dagster" not in modules


def test_dg_check_defs_passes(isolated_env):
    out = subprocess.run(
        [DG, "check", "defs"],
        cwd=REPO,
        env=isolated_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout
    assert "All definitions loaded successfully" in out.stdout, out.stdout


def _free_port() -> int:
    # The OS picks a free port; it could be taken again before dg binds it, but that is unlikely.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(
        url,
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


def _wait_until_serving(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"dg dev exited with code {server.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:  # refused, reset or 5xx while the webserver starts
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 within {SERVER_START_TIMEOUT_S} s")


def _signal_group(server: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(server.pid, sig)
    except ProcessLookupError:
        pass  # the whole group has already exited


def _stop(server: subprocess.Popen) -> None:
    """Stop ``dg dev`` and everything it started (webserver, daemon, code servers)."""
    _signal_group(server, signal.SIGTERM)
    try:
        server.wait(timeout=SHUTDOWN_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    # Even after a clean exit of dg itself, make sure no child of its session lingers.
    _signal_group(server, signal.SIGKILL)
    server.wait()


@contextlib.contextmanager
def dg_dev(env: dict, log_path: Path):
    """`dg dev` (webserver + daemon) on a free port of 127.0.0.1, output in ``log_path``;
    yields its base URL once it serves, and stops its whole process group afterwards."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        # A new session, so that the whole process tree can be signalled as one group.
        server = subprocess.Popen(
            [DG, "dev", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_serving(f"{base}/server_info", server)
        yield base
    finally:
        _stop(server)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def test_dg_dev_serves_the_ui(tmp_path, isolated_env):
    log_path = tmp_path / "dg-dev.log"
    try:
        with dg_dev(isolated_env, log_path) as base:
            nodes = _graphql(f"{base}/graphql", ASSET_KEYS_QUERY)["assetNodes"]
            assert [ASSET] in [node["assetKey"]["path"] for node in nodes], nodes
            assert "Dagster" in _get(f"{base}/")
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- last lines of {log_path} ---\n{_tail(log_path)}") from exc


def test_no_stage_imports_another_stages_defs():
    """A defs/<stage>/ module imports core/, lib/ and its own stage, never another stage's
    defs (shared pieces live in lib/)."""
    import ast

    defs = REPO / "l1000_assets" / "defs"
    crossing = []
    for path in sorted(defs.rglob("*.py")):
        stage = path.relative_to(defs).parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "l1000_assets.defs."
            ):
                other = node.module.split(".")[2]
                if other != stage:
                    crossing.append(f"{path.relative_to(REPO)} imports {node.module}")
    assert not crossing, crossing


def test_assets_have_owners_code_references_and_catalog_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("L1000_DATA_ROOT", str(tmp_path))
    monkeypatch.delenv("L1000_GIT_URL", raising=False)
    from l1000_assets.definitions import defs
    from l1000_assets.lib.ui import web_url

    graph = defs().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners, key
        refs = node.metadata["dagster/code_references"].code_references
        assert refs and all(Path(getattr(r, "file_path", REPO)).exists() for r in refs), key
    tables = {
        k.to_user_string(): graph.get(k).metadata.get("dagster/table_name")
        for k in graph.get_all_asset_keys()
    }
    assert tables["landmark_profiles"] == "l1000.main.profiles"
    assert tables["evaluation_metrics"] == "l1000.main.evaluation_metrics"
    warehouse = graph.get(dg.AssetKey("warehouse"))
    assert dg.AssetKey("evaluation_metrics") in warehouse.parent_keys
    # In a clone with a remote, or with L1000_GIT_URL, the references link into git.
    assert web_url("git@github.com:lab/l1000_assets.git") == "https://github.com/lab/l1000_assets"
    assert web_url("/srv/git/l1000_assets") == ""
    monkeypatch.setenv("L1000_GIT_URL", "https://github.com/lab/l1000_assets")
    monkeypatch.setenv("L1000_GIT_BRANCH", "main")
    linked = defs().resolve_asset_graph().get(dg.AssetKey("warehouse"))
    [ref] = linked.metadata["dagster/code_references"].code_references
    assert ref.url.startswith(
        "https://github.com/lab/l1000_assets/tree/main/l1000_assets/defs/catalog/assets.py#L"
    )


def test_stage_jobs_cover_the_demo_and_are_tagged(tmp_path, monkeypatch):
    monkeypatch.setenv("L1000_DATA_ROOT", str(tmp_path))
    from l1000_assets.definitions import defs
    from l1000_assets.defs.stages.jobs import STAGE_JOBS
    from l1000_assets.lib.keys import STAGE_TAG

    definitions = defs()
    covered = set()
    for name, stage, keys, _, _ in STAGE_JOBS:
        job = definitions.resolve_job_def(name)
        assert job.tags[STAGE_TAG] == stage
        covered |= set(keys)
    assert covered == set(definitions.resolve_asset_graph().get_all_asset_keys())
    # A stage job run in process (as l1000 demo runs it): named, tagged, with its checks.
    with dg.DagsterInstance.ephemeral() as instance:
        job = definitions.resolve_job_def("synthetic_release_job")
        result = job.execute_in_process(
            instance=instance,
            tags=job.tags,
            run_config={"ops": {"synthetic_release": {"config": {"n_profiles": 200, "seed": 1}}}},
        )
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run.job_name == "synthetic_release_job" and run.tags[STAGE_TAG] == "releases"
        assert result.get_asset_check_evaluations()


def test_loading_definitions_warns_nothing(tmp_path, monkeypatch):
    """`make ui` printed BetaWarnings: the code references' beta APIs and map_asset_specs'
    preview one are filtered by name, and nothing else is raised on loading."""
    import warnings

    monkeypatch.setenv("L1000_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("L1000_GIT_URL", "https://github.com/lab/l1000_assets")
    from l1000_assets.definitions import defs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        defs().resolve_asset_graph()
    shown = [
        f"{w.category.__name__}: {w.message}"
        for w in caught
        if issubclass(w.category, dg.BetaWarning | dg.PreviewWarning)
    ]
    assert not shown, shown
