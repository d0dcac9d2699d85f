"""``release_sensor``: notice new or changed releases and ingest each version once.

Sources watched on every tick (once a minute):

* the embedded synthetic release's directory, ``<data root>/releases/synthetic`` (written by
  ``synthetic_release``), once it exists;
* every local release in ``L1000_LOCAL_RELEASES``;
* every directory dropped into ``<data root>/releases/incoming/<name>/`` (the release is called
  ``<name>``);
* the public releases listed in ``L1000_WATCH_RELEASES`` (through their mirror when
  ``L1000_RELEASE_MIRRORS`` names one), at most once per ``L1000_WATCH_HTTP_SECONDS``.

For each, :mod:`l1000_assets.core.releases.watch` computes a version signature and compares it
with the cursor. A new or changed version adds the ``release`` partition and requests one run
of ``release_ingest_job`` with the run key ``release:<name>:<version>``: the instance never
launches the same key twice, so a version is ingested once. A source that cannot be reached
is logged and skipped (its cursor entry is kept); nothing a source does can fail the tick.
"""

import json
import time
import traceback

import dagster as dg

from l1000_assets.core.releases import watch
from l1000_assets.core.releases.registry import KNOWN_RELEASES, ReleaseSource
from l1000_assets.defs.automation.jobs import release_ingest_job
from l1000_assets.lib.automation import automation_default_status
from l1000_assets.lib.partitions import (
    missing_partitions,
    release_partitions,
    valid_release,
)
from l1000_assets.lib.releases import SYNTHETIC, ReleaseRegistry, ReleaseWatch
from l1000_assets.lib.resources import LakeResource

SENSOR_INTERVAL_S = 60
RELEASE_TAG = "l1000/release"
VERSION_TAG = "l1000/release_version"


def watched_sources(
    lake: LakeResource, releases: ReleaseRegistry, settings: ReleaseWatch, log
) -> list[ReleaseSource]:
    """The release sources to check, in a stable order, each name once."""
    out: dict[str, ReleaseSource] = {}
    synthetic_dir = lake.release_dir(SYNTHETIC)
    if synthetic_dir.is_dir():
        out[SYNTHETIC] = releases.source(SYNTHETIC, str(synthetic_dir))
    for name in sorted(releases.local_releases):
        out[name] = releases.source(name, str(synthetic_dir))
    releases_dir = synthetic_dir.parent
    bad = watch.invalid_incoming(releases_dir)
    if bad:
        log.warning(
            f"{releases_dir / watch.INCOMING}: directory names not usable as release "
            f"names (letters, digits, '_', '.', '-'), ignored: {bad}"
        )
    for name, path in watch.incoming_releases(releases_dir).items():
        if name in out or name in KNOWN_RELEASES or name == SYNTHETIC:
            log.warning(f"{path}: a release called {name!r} is already configured; ignored")
            continue
        out[name] = releases.source(name, str(synthetic_dir))
    for name in settings.public:
        out[name] = releases.source(name, str(synthetic_dir))
    return [s for s in out.values() if valid_release(s.name)]


def _manifest(lake: LakeResource, name: str) -> dict | None:
    """``release_files``' record of the version it last ingested, when the metadata exists."""
    path = lake.release_manifest_path(name)
    if not (lake.metadata_dir(name) / "instances.parquet").is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


@dg.sensor(
    name="release_sensor",
    job=release_ingest_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=automation_default_status(),
    description=(
        "Watches the release sources (the synthetic release's directory, local releases, "
        "drop-in directories under <data root>/releases/incoming/, and the public releases "
        "listed in L1000_WATCH_RELEASES) and requests release_ingest_job once per new or "
        "changed version: HTTP ETag/Last-Modified/Content-Length, dated GEO file names and "
        "metadata column sets; local size, mtime and hash. Unreachable sources are skipped."
    ),
)
def release_sensor(
    context: dg.SensorEvaluationContext,
    lake: LakeResource,
    releases: ReleaseRegistry,
    release_watch: ReleaseWatch,
) -> dg.SensorResult:
    cursor = watch.WatchCursor.from_json(context.cursor)
    now = time.time()
    requests: list[dg.RunRequest] = []
    notes: list[str] = []
    try:
        sources = watched_sources(lake, releases, release_watch, context.log)
    except Exception as exc:  # a broken configuration must not take the daemon down
        context.log.error(f"release_sensor: cannot list the release sources: {exc}")
        return dg.SensorResult(
            skip_reason=f"cannot list the release sources: {exc}", cursor=context.cursor
        )
    for source in sources:
        entry = cursor.entries.get(source.name)
        try:
            decision = _check(source, entry, now, lake, release_watch)
        except watch.SourceUnavailable as exc:
            context.log.warning(f"{source.name}: unreachable, skipped this tick: {exc}")
            notes.append(f"{source.name}: unreachable")
            # Back off like a successful check (HTTP sources are retried after the interval).
            cursor.entries[source.name] = watch.WatchEntry(
                version=entry.version if entry else None,
                signature=entry.signature if entry else None,
                pending=entry.pending if entry else None,
                checked=now,
            )
            continue
        except Exception as exc:
            context.log.error(
                f"{source.name}: check failed, skipped this tick: {exc!r}\n"
                f"{traceback.format_exc(limit=5)}"
            )
            notes.append(f"{source.name}: check failed")
            continue
        cursor.entries[source.name] = decision.entry
        if decision.action == "request":
            context.log.info(
                f"{source.name}: {decision.message}; requesting version {decision.version}"
            )
            requests.append(
                dg.RunRequest(
                    run_key=watch.run_key(source.name, decision.version),
                    partition_key=source.name,
                    tags={RELEASE_TAG: source.name, VERSION_TAG: decision.version},
                )
            )
        elif decision.action != "later":
            if decision.action != "unchanged":
                context.log.info(f"{source.name}: {decision.action}: {decision.message}")
            notes.append(f"{source.name}: {decision.action}")
    new_keys = missing_partitions(
        context.instance, release_partitions, [r.partition_key for r in requests]
    )
    partition_requests = [release_partitions.build_add_request(new_keys)] if new_keys else []
    if new_keys:
        context.log.info(f"adding release partitions: {new_keys}")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=partition_requests,
        cursor=cursor.to_json(),
        skip_reason=None
        if requests
        else (
            "; ".join(notes)
            if notes
            else "no release sources to check (see L1000_WATCH_RELEASES, "
            "L1000_LOCAL_RELEASES, <data root>/releases/incoming/)"
        ),
    )


def _check(
    source: ReleaseSource,
    entry: watch.WatchEntry | None,
    now: float,
    lake: LakeResource,
    settings: ReleaseWatch,
) -> watch.Decision:
    previous = entry.signature if entry else None
    if source.kind == "local":
        signature = watch.local_signature(source.path, previous)
    elif entry is not None and now - entry.checked < settings.http_interval_seconds:
        signature = None  # checked recently enough
    else:
        signature = watch.http_signature(source, previous, timeout=settings.timeout_seconds)
    ingested = (
        signature is not None
        and (entry is None or entry.version is None)
        and watch.matches_manifest(signature, _manifest(lake, source.name))
    )
    # The synthetic release is swapped in whole by synthetic_release: nothing to wait for.
    settle = settings.settle and source.kind == "local" and source.name != SYNTHETIC
    return watch.step(entry, signature, now=now, ingested=ingested, settle=settle)
