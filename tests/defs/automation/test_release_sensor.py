"""release_sensor against real sources: an HTTP mirror on 127.0.0.1 and local directories.

Every tick is a real evaluation of the sensor (``dg.build_sensor_context``) on a real
temporary Dagster instance; the cursor each tick returns is fed to the next one.
"""

import gzip
import os
import shutil
import socket

import dagster as dg
import pytest

from l1000_assets.core.releases import watch
from l1000_assets.core.releases.registry import KNOWN_RELEASES
from l1000_assets.core.releases.synthetic import (
    SyntheticConfig,
    write_synthetic_release,
)
from l1000_assets.defs.automation.sensors import release_sensor
from l1000_assets.lib.partitions import valid_cell_line, valid_release
from l1000_assets.lib.releases import ReleaseRegistry, ReleaseWatch
from l1000_assets.lib.resources import LakeResource

GEO = KNOWN_RELEASES["GSE92742"]
DATED = KNOWN_RELEASES["GSE70138"]
INST_HEADER = "inst_id\tpert_id\tpert_iname\tpert_type\tcell_id\n"


def _table(header: str, rows: int = 3) -> bytes:
    width = header.count("\t") + 1
    body = "".join("\t".join(f"v{r}_{c}" for c in range(width)) + "\n" for r in range(rows))
    return gzip.compress((header + body).encode(), mtime=0)


def _publish(site, source, prefix: str, inst_header: str = INST_HEADER) -> None:
    """A release's files under ``prefix``: small stand-ins with real header lines."""
    for role, name in source.files.items():
        if role == "inst_info":
            data = _table(inst_header)
        elif role.endswith("_info"):
            data = _table(f"{role}_id\tname\n")
        else:
            data = gzip.compress(f"{role} bytes".encode(), mtime=0)
        site.put(f"{prefix}/{name}", data)


class Ticks:
    """Evaluates release_sensor tick after tick, as the daemon would."""

    def __init__(self, instance, root, *, mirrors=None, public=(), local=None):
        self.instance = instance
        self.cursor = None
        self.resources = {
            "lake": LakeResource(root=str(root)),
            "releases": ReleaseRegistry(mirrors=mirrors or {}, local_releases=local or {}),
            "release_watch": ReleaseWatch(
                public=list(public), http_interval_seconds=0, timeout_seconds=5
            ),
        }

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        )
        result = release_sensor(context)
        assert isinstance(result, dg.SensorResult)
        self.cursor = result.cursor
        # The daemon applies the partition requests before launching the runs.
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(
                request.partitions_def_name, list(request.partition_keys)
            )
        return result


@pytest.fixture
def sensor_log(capfd):
    """The sensor's log so far (Dagster writes the context log of a test tick to stderr)."""
    seen = []

    def read() -> str:
        seen.append(capfd.readouterr().err)
        return "".join(seen)

    return read


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def _reason(result) -> str:
    return result.skip_reason.skip_message if result.skip_reason else ""


def _keys(result) -> list[tuple[str, str]]:
    return [(r.partition_key, r.run_key) for r in result.run_requests or []]


def test_http_release_first_tick_then_unchanged_then_changed_etag(site, instance, tmp_path):
    _publish(site, GEO, "/geo")
    ticks = Ticks(
        instance, tmp_path / "data", mirrors={"GSE92742": site.base + "/geo"}, public=["GSE92742"]
    )

    first = ticks.tick()
    [(partition, key)] = _keys(first)
    assert partition == "GSE92742" and key.startswith("release:GSE92742:")
    assert first.run_requests[0].tags["l1000/release"] == "GSE92742"
    assert instance.get_dynamic_partitions("release") == ["GSE92742"]
    heads = len(site.requests("HEAD"))
    assert heads == len(GEO.files)

    again = ticks.tick()
    assert _keys(again) == []
    assert "GSE92742: unchanged" in _reason(again)
    # Unchanged validators: HEAD only, no ranged GETs for the column sets.
    assert len(site.requests("HEAD")) == 2 * heads
    gets_before = len(site.requests("GET"))

    # The server publishes new bytes for one file: a new ETag, a new version, a new run key.
    site.put(f"/geo/{GEO.files['level4']}", gzip.compress(b"level4 v2", mtime=0))
    changed = ticks.tick()
    [(partition, new_key)] = _keys(changed)
    assert partition == "GSE92742" and new_key != key
    assert len(site.requests("GET")) == gets_before  # a data file: no header to read
    assert _keys(ticks.tick()) == []


def test_column_set_change_is_a_new_version_and_named(site, instance, tmp_path, sensor_log):
    _publish(site, GEO, "/geo")
    ticks = Ticks(
        instance, tmp_path / "data", mirrors={"GSE92742": site.base + "/geo"}, public=["GSE92742"]
    )
    [(_, key)] = _keys(ticks.tick())
    site.put(f"/geo/{GEO.files['inst_info']}", _table(INST_HEADER.replace("cell_id", "cell_iname")))
    [(_, new_key)] = _keys(ticks.tick())
    assert new_key != key
    assert "columns of inst_info: +['cell_iname'] -['cell_id']" in sensor_log()


def test_newly_dated_geo_file_requests_a_new_run(site, instance, tmp_path, sensor_log):
    _publish(site, DATED, "/gse70138")
    ticks = Ticks(
        instance,
        tmp_path / "data",
        mirrors={"GSE70138": site.base + "/gse70138"},
        public=["GSE70138"],
    )
    [(partition, key)] = _keys(ticks.tick())
    assert partition == "GSE70138"
    assert _keys(ticks.tick()) == []

    # GEO re-issues the inst_info table under a later date; the old file stays listed.
    newer = DATED.files["inst_info"].replace("2017-03-06", "2018-11-20")
    site.put(f"/gse70138/{newer}", _table(INST_HEADER))
    [(partition, new_key)] = _keys(ticks.tick())
    assert partition == "GSE70138" and new_key != key
    assert f"newly dated inst_info: {newer}" in sensor_log()
    assert _keys(ticks.tick()) == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


def test_a_server_that_is_down_is_skipped_with_a_message(site, instance, tmp_path, sensor_log):
    _publish(site, GEO, "/geo")
    down = f"http://127.0.0.1:{_closed_port()}/geo"
    # Two public releases: one mirror is down, the other answers.
    _publish(site, DATED, "/gse70138")
    ticks = Ticks(
        instance,
        tmp_path / "data",
        mirrors={"GSE92742": down, "GSE70138": site.base + "/gse70138"},
        public=["GSE92742", "GSE70138"],
    )
    result = ticks.tick()
    assert [p for p, _ in _keys(result)] == ["GSE70138"]
    assert "GSE92742: unreachable, skipped this tick" in sensor_log()
    assert "cannot connect" in sensor_log()
    assert instance.get_dynamic_partitions("release") == ["GSE70138"]

    # Only the dead mirror: nothing requested, the tick says why, the cursor survives.
    ticks.resources["release_watch"] = ReleaseWatch(
        public=["GSE92742"], http_interval_seconds=0, timeout_seconds=5
    )
    result = ticks.tick()
    assert _keys(result) == [] and "GSE92742: unreachable" in _reason(result)
    # The mirror comes back (same files now served by the live site): picked up then.
    ticks.resources["releases"] = ReleaseRegistry(mirrors={"GSE92742": site.base + "/geo"})
    assert [p for p, _ in _keys(ticks.tick())] == ["GSE92742"]


def test_http_sources_are_checked_at_most_once_per_interval(site, instance, tmp_path):
    _publish(site, GEO, "/geo")
    ticks = Ticks(
        instance, tmp_path / "data", mirrors={"GSE92742": site.base + "/geo"}, public=["GSE92742"]
    )
    ticks.resources["release_watch"] = ReleaseWatch(public=["GSE92742"], http_interval_seconds=3600)
    assert len(_keys(ticks.tick())) == 1
    heads = len(site.requests("HEAD"))
    site.put(f"/geo/{GEO.files['level4']}", b"changed")
    assert _keys(ticks.tick()) == []  # within the hour: not even asked
    assert len(site.requests("HEAD")) == heads


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory):
    return write_synthetic_release(
        tmp_path_factory.mktemp("tiny"), SyntheticConfig(n_profiles=120, seed=5)
    )


def test_a_release_dropped_into_incoming_is_picked_up_once_settled(
    instance, tmp_path, tiny_release, sensor_log
):
    root = tmp_path / "data"
    ticks = Ticks(instance, root)
    first = ticks.tick()
    assert _keys(first) == [] and "no release sources" in _reason(first)

    incoming = root / "releases" / "incoming"
    target = incoming / "MyLab_2025-01"
    target.mkdir(parents=True)
    shutil.copy(tiny_release.inst_info, target)  # a copy in progress: no matrix yet
    assert _keys(ticks.tick()) == []
    assert "MyLab_2025-01: incomplete" in _reason(ticks.tick())
    for path in tiny_release.root.iterdir():
        shutil.copy(path, target)
    settling = ticks.tick()
    assert _keys(settling) == [] and "MyLab_2025-01: settling" in _reason(settling)
    [(partition, key)] = _keys(ticks.tick())
    assert partition == "MyLab_2025-01"
    assert instance.get_dynamic_partitions("release") == ["MyLab_2025-01"]
    assert _keys(ticks.tick()) == []

    # A touch changes only the mtime: not a new release.
    os.utime(target / tiny_release.inst_info.name)
    assert _keys(ticks.tick()) == []
    # New content: a new version once it settles.
    with open(target / tiny_release.gene_info.name, "a") as f:
        f.write("\n")
    assert _keys(ticks.tick()) == []
    [(partition, new_key)] = _keys(ticks.tick())
    assert partition == "MyLab_2025-01" and new_key != key

    # Directory names that cannot be partition keys are ignored, with a warning.
    (incoming / "bad name!").mkdir()
    assert _keys(ticks.tick()) == []
    assert "not usable as release names" in sensor_log() and "bad name!" in sensor_log()


def test_an_ingested_release_is_not_requested_again_by_a_fresh_cursor(
    instance, tmp_path, tiny_release
):
    """After `l1000 demo` or a cursor reset: release_files' manifest says it is ingested."""
    from l1000_assets.definitions import defs

    root = tmp_path / "data"
    source = tmp_path / "lab"
    shutil.copytree(tiny_release.root, source)
    local = {"lab": str(source)}
    instance.add_dynamic_partitions("release", ["lab"])
    definitions = defs()
    ticks = Ticks(instance, root, local=local)
    result = dg.materialize(
        [*definitions.assets, *definitions.asset_checks],
        selection=["release_files", "release_metadata"],
        instance=instance,
        resources=ticks.resources,
        partition_key="lab",
    )
    assert result.success
    first = ticks.tick()
    assert _keys(first) == [] and "lab: ingested" in _reason(first)
    assert "lab: unchanged" in _reason(ticks.tick())
    # A changed file after ingest is new again.
    with open(source / tiny_release.gene_info.name, "a") as f:
        f.write("\n")
    assert _keys(ticks.tick()) == []  # settling
    assert [p for p, _ in _keys(ticks.tick())] == ["lab"]


def test_fingerprint_of_a_large_file_hashes_its_ends_and_size(tmp_path):
    """release_files records the same fingerprint (it calls this function)."""
    big = tmp_path / "big.gctx"
    with open(big, "wb") as f:
        f.truncate(70 << 20)  # sparse: over the 64 MB whole-file limit
    before = watch.fingerprint(big)
    with open(big, "r+b") as f:
        f.seek(35 << 20)
        f.write(b"x")  # the middle is not read
    assert watch.fingerprint(big) == before
    with open(big, "r+b") as f:
        f.seek((70 << 20) - 1)
        f.write(b"x")  # the last 16 MB are
    assert watch.fingerprint(big) != before
    small = tmp_path / "small.txt"
    small.write_bytes(b"abc")
    import hashlib

    assert watch.fingerprint(small) == hashlib.sha256(b"abc").hexdigest()


def test_the_synthetic_release_directory_is_watched_once_it_exists(
    instance, tmp_path, tiny_release
):
    root = tmp_path / "data"
    ticks = Ticks(instance, root)
    assert _keys(ticks.tick()) == []
    # synthetic_release swaps the directory in whole: requested on the first tick that sees it.
    shutil.copytree(tiny_release.root, root / "releases" / "synthetic")
    assert [p for p, _ in _keys(ticks.tick())] == ["synthetic"]
    assert _keys(ticks.tick()) == []


@pytest.mark.parametrize(
    "key", ["SK-N-SH", "NCI-H716", "HEK293T", "A375.311", "GSE92742", "MyLab_2025-01"]
)
def test_real_names_are_valid_partition_keys(key):
    assert valid_cell_line(key) and valid_release(key)


@pytest.mark.parametrize("key", ["", "../etc", "a/b", "a..b", ".hidden", "with space", "x" * 80])
def test_unsafe_names_are_rejected(key):
    assert not valid_cell_line(key) and not valid_release(key)


def test_run_keys_are_unique_per_version():
    a = {"kind": "http", "files": {"level4": {"etag": '"1"'}}, "dated": {}, "columns": {}}
    b = {"kind": "http", "files": {"level4": {"etag": '"2"'}}, "dated": {}, "columns": {}}
    assert watch.version(a) == watch.version(dict(a))
    assert watch.run_key("r", watch.version(a)) != watch.run_key("r", watch.version(b))
