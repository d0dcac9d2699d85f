"""What the release sensor watches, and whether automation starts switched on."""

import os

import dagster as dg
from pydantic import Field

from l1000_assets.core.sources import KNOWN_RELEASES

WATCH_ENV = "L1000_WATCH_RELEASES"
HTTP_INTERVAL_ENV = "L1000_WATCH_HTTP_SECONDS"
AUTOMATION_ENV = "L1000_AUTOMATION"


def automation_default_status() -> dg.DefaultSensorStatus:
    """RUNNING unless ``L1000_AUTOMATION=off`` (then the sensors start stopped; the UI can
    still switch them on)."""
    off = os.environ.get(AUTOMATION_ENV, "on").strip().lower() in ("off", "0", "false", "no")
    return dg.DefaultSensorStatus.STOPPED if off else dg.DefaultSensorStatus.RUNNING


def schedule_default_status() -> dg.DefaultScheduleStatus:
    running = automation_default_status() == dg.DefaultSensorStatus.RUNNING
    return dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED


class ReleaseWatch(dg.ConfigurableResource):
    """What ``release_sensor`` watches besides the local releases (which it always watches).

    Public releases are opt-in, since a first ingest downloads tens of GB: list them in
    ``L1000_WATCH_RELEASES`` (comma-separated, or ``all``). A mirror from
    ``L1000_RELEASE_MIRRORS`` is watched instead of the original when one is configured.
    """

    public: list[str] = Field(default_factory=list,
                              description="Public releases to watch (GSE92742, GSE70138, LINCS2020).")
    http_interval_seconds: int = Field(
        default=3600, ge=0, description="Seconds between checks of an HTTP source (HEAD requests).")
    timeout_seconds: float = Field(default=30.0, gt=0, description="HTTP timeout per request.")
    settle: bool = Field(default=True, description=(
        "Local directories: request a version only once two checks in a row saw it (a copy in "
        "progress is not ingested half-way)."))


def watch_from_env() -> ReleaseWatch:
    raw = os.environ.get(WATCH_ENV, "").strip()
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if [n.lower() for n in names] == ["all"]:
        names = list(KNOWN_RELEASES)
    unknown = [n for n in names if n not in KNOWN_RELEASES]
    if unknown:
        raise ValueError(f"{WATCH_ENV}: {unknown} are not known public releases "
                         f"({', '.join(KNOWN_RELEASES)}); local releases are always watched")
    interval = os.environ.get(HTTP_INTERVAL_ENV, "").strip()
    return ReleaseWatch(public=names,
                        **({"http_interval_seconds": int(interval)} if interval else {}))


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"release_watch": watch_from_env()})
