"""The UI in a real browser: `dg dev` on 127.0.0.1 and headless Chromium driven over the Chrome
DevTools Protocol (a websocket; no browser download, no browser-driver package).

The test starts the webserver and daemon the way ``make ui`` does (against a throwaway
instance and data root), opens the asset graph and checks that the asset names are rendered,
launches a materialization of a small synthetic release through the UI's GraphQL endpoint,
waits for it to succeed, and finds it as a success on the runs page. Screenshots of both
pages are saved under ``test-artifacts/`` (git-ignored).

Chromium is Debian's ``chromium`` package: when it is missing, the session installs it with
``apt-get`` (as root); the tests are skipped, with the reason, only when that fails.
"""

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_definitions import DG, _tail, dg_dev

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
    "--window-size=1600,1000",
]
PAGE_TIMEOUT_S = 60
RUN_TIMEOUT_S = 180
N_PROFILES = 200


# -- Chromium -------------------------------------------------------------------------------


def _apt_install_chromium() -> str:
    """Install Debian's chromium package; return apt's output tail (for a skip reason)."""
    if shutil.which("apt-get") is None:
        return "apt-get not found (not a Debian-like system)"
    if os.geteuid() != 0:
        return "not root, cannot apt-get install chromium (run: sudo apt-get install chromium)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    out = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:  # stale package lists: refresh once and retry
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        out = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    return (out.stdout + out.stderr)[-800:]


@pytest.fixture(scope="session")
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    log = _apt_install_chromium()
    found = shutil.which("chromium")
    if not found:
        pytest.skip(f"headless Chromium unavailable and `apt-get install chromium` failed: {log}")
    return found


class Page:
    """One headless Chromium tab, driven over the DevTools Protocol."""

    def __init__(self, chromium: str, profile: Path, log: Path):
        from websockets.sync.client import connect

        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"chromium did not start:\n{_tail(log)}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            connect(target["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        )
        self._ids = itertools.count(1)

    def call(self, method: str, **params):
        message_id = next(self._ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]

    def goto(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def dismiss_dialogs(self) -> None:
        """Close the UI's first-visit "Join the Dagster community" dialog if it is open."""
        self.evaluate("""[...document.querySelectorAll('[role=dialog] button')]
            .filter(b => b.innerText.trim() === 'Skip').forEach(b => b.click())""")

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, needles, timeout: float = PAGE_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline:
                missing = [n for n in needles if n not in text]
                raise AssertionError(
                    f"not rendered within {timeout} s: {missing}\npage text: {text[:2000]}"
                )
            time.sleep(0.5)

    def wait_until_loaded(self, timeout: float = 15) -> None:
        """Give the asset nodes' details ("Loading…") a moment to arrive (not asserted)."""
        deadline = time.monotonic() + timeout
        while "Loading" in self.text() and time.monotonic() < deadline:
            time.sleep(0.5)

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        print(f"screenshot: {path}")
        return path

    def close(self) -> None:
        try:
            self._stack.close()
        finally:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self._log.close()


# -- the UI ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """`dg dev` (webserver + daemon) on 127.0.0.1 with a throwaway instance and data root."""
    tmp = tmp_path_factory.mktemp("ui")
    home = tmp / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    (tmp / "data").mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "L1000_DATA_ROOT": str(tmp / "data"),
        "VIRTUAL_ENV": str(Path(DG).parent.parent),
        # Sensors start stopped: the test launches its own run and nothing else.
        "L1000_AUTOMATION": "off",
    }
    log = tmp / "dg-dev.log"
    with dg_dev(env, log) as base:
        yield base, log


@pytest.fixture
def page(chromium, tmp_path):
    page = Page(chromium, tmp_path / "chromium-profile", tmp_path / "chromium.log")
    yield page
    page.close()


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{base}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


ASSETS = """{ assetNodes { assetKey { path } groupName description computeKind
  kinds hasAssetChecks } }"""
REPOSITORIES = """{ repositoriesOrError { ... on RepositoryConnection {
  nodes { name location { name } } } } }"""
LAUNCH = """mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  } }"""
RUN_STATUS = """query Status($id: ID!) { runOrError(runId: $id) {
  ... on Run { status } } }"""
RUN_JOB = """query Job($id: ID!) { runOrError(runId: $id) {
  ... on Run { pipelineName tags { key value } } } }"""


def _repository(base: str) -> dict:
    [repo] = graphql(base, REPOSITORIES)["repositoriesOrError"]["nodes"]
    return repo


def test_asset_graph_renders_every_asset(ui, page):
    base, log = ui
    nodes = graphql(base, ASSETS)["assetNodes"]
    names = sorted("/".join(n["assetKey"]["path"]) for n in nodes)
    assert {
        "synthetic_release",
        "release_files",
        "release_metadata",
        "landmark_profiles",
        "warehouse",
    } <= set(names)
    for node in nodes:  # what the UI shows beside each asset
        assert node["description"] and node["groupName"] != "default" and node["kinds"], node
    groups = sorted({n["groupName"] for n in nodes})
    page.goto(f"{base}/asset-groups")
    page.wait_for_text(groups)  # the global lineage shows one box per group
    page.dismiss_dialogs()
    page.screenshot(ARTIFACTS / "ui-asset-lineage.png")
    repo = _repository(base)
    address = (
        repo["location"]["name"]
        if repo["name"] == "__repository__"
        else f"{repo['name']}@{repo['location']['name']}"
    )
    for group in groups:  # each group's graph shows its assets by name
        members = [
            name
            for name, n in zip(
                names, sorted(nodes, key=lambda n: "/".join(n["assetKey"]["path"])), strict=True
            )
            if n["groupName"] == group
        ]
        page.goto(f"{base}/locations/{address}/asset-groups/{group}")
        try:
            page.wait_for_text(members)
            page.wait_until_loaded()
        finally:
            page.dismiss_dialogs()
            page.screenshot(ARTIFACTS / f"ui-asset-graph-{group}.png")
    page.goto(f"{base}/automation")
    page.wait_for_text(["release_sensor", "release_automation_sensor", "weekly_refresh_schedule"])


def test_launch_a_synthetic_release_and_see_it_succeed(ui, page):
    base, log = ui
    repo = _repository(base)
    params = {
        "selector": {
            "repositoryLocationName": repo["location"]["name"],
            "repositoryName": repo["name"],
            "pipelineName": "__ASSET_JOB",
            "assetSelection": [{"path": ["synthetic_release"]}],
        },
        "runConfigData": {
            "ops": {"synthetic_release": {"config": {"n_profiles": N_PROFILES, "seed": 1}}}
        },
        "mode": "default",
        "executionMetadata": {"tags": [{"key": "l1000/test", "value": "browser"}]},
    }
    launched = graphql(base, LAUNCH, {"params": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = None
    while time.monotonic() < deadline:
        status = graphql(base, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS", f"run {run_id}: {status}\n{_tail(log)}"

    try:
        page.goto(f"{base}/runs")
        page.wait_for_text([run_id[:8], "Success"])
    finally:
        page.dismiss_dialogs()
        page.screenshot(ARTIFACTS / "ui-runs.png")
    page.goto(f"{base}/runs/{run_id}")
    page.wait_for_text(["synthetic_release", "Success"])


def _launch_and_wait(base: str, log: Path, params: dict) -> str:
    launched = graphql(base, LAUNCH, {"params": params})["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    status = None
    while time.monotonic() < deadline:
        status = graphql(base, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS", f"run {run_id}: {status}\n{_tail(log)}"
    return run_id


def test_an_assets_page_shows_its_plot(ui, page):
    """release_metadata's page, after a run of the named stage job: its metadata has the
    profiles plot, which opens and renders as an image."""
    base, log = ui
    repo = _repository(base)
    selector = {"repositoryLocationName": repo["location"]["name"], "repositoryName": repo["name"]}
    config = {"ops": {"synthetic_release": {"config": {"n_profiles": N_PROFILES, "seed": 1}}}}
    _launch_and_wait(
        base,
        log,
        {
            "selector": {**selector, "pipelineName": "synthetic_release_job"},
            "runConfigData": config,
            "mode": "default",
        },
    )
    run_id = _launch_and_wait(
        base,
        log,
        {
            "selector": {**selector, "pipelineName": "release_metadata_job"},
            "mode": "default",
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "synthetic"}]},
        },
    )
    run = graphql(base, RUN_JOB, {"id": run_id})["runOrError"]
    assert run["pipelineName"] == "release_metadata_job"  # a named job, not an ephemeral one
    assert {"key": "l1000/stage", "value": "releases"} in run["tags"]
    page.goto(f"{base}/assets/release_metadata")
    try:
        page.wait_for_text(["release_metadata", "profiles_plot"])
        page.dismiss_dialogs()
        # The plot is markdown metadata: its entry opens it (a button or link in the row).
        page.evaluate("""(() => {
            const row = [...document.querySelectorAll('tr')]
                .find(r => r.innerText.includes('profiles_plot'));
            const opener = row && row.querySelector('button, a');
            if (opener) opener.click();
        })()""")
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        shown = 0
        while time.monotonic() < deadline and not shown:
            shown = page.evaluate("""[...document.querySelectorAll('img')]
                .filter(i => i.src.startsWith('data:image/png') && i.complete
                        && i.naturalWidth > 0).map(i => i.naturalWidth)[0] || 0""")
            time.sleep(0.5)
    finally:
        page.screenshot(ARTIFACTS / "ui-asset-plot.png")
    assert 300 < shown <= 800, f"no readable plot image on the page (width {shown})"
