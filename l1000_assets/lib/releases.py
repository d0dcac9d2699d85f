"""Which releases exist and where their files live."""

import json
import os
from dataclasses import replace
from pathlib import Path

import dagster as dg
from pydantic import Field

from l1000_assets.core.releases.registry import (
    KNOWN_RELEASES,
    RELEASE_NAME,
    ReleaseSource,
)
from l1000_assets.core.releases.watch import incoming_releases
from l1000_assets.lib.resources import LakeResource

LOCAL_RELEASES_ENV = "L1000_LOCAL_RELEASES"
MIRRORS_ENV = "L1000_RELEASE_MIRRORS"
WATCH_ENV = "L1000_WATCH_RELEASES"
HTTP_INTERVAL_ENV = "L1000_WATCH_HTTP_SECONDS"
SYNTHETIC = "synthetic"


class ReleaseRegistry(dg.ConfigurableResource):
    """The release sources: the public ones (GSE92742, GSE70138, LINCS2020), the embedded
    synthetic release, and local directories a user names.

    Local releases come from ``L1000_LOCAL_RELEASES``: a JSON object
    ``{"name": "/path/to/dir", ...}``. Each directory holds a level-4 GCTX (or a GCT) and
    the metadata tables, found by their GEO-style names; so does each sub-directory of
    ``<data root>/releases/incoming/``, named by the directory. ``L1000_RELEASE_MIRRORS`` maps a
    public release to another base URL serving the same file names (an institutional
    mirror), e.g. ``{"GSE92742": "https://mirror.example.org/geo/GSE92742"}``.
    """

    local_releases: dict[str, str] = Field(
        default_factory=dict, description="Local release name -> directory of its files."
    )
    mirrors: dict[str, str] = Field(
        default_factory=dict, description="Public release name -> base URL of a mirror."
    )
    timeout_seconds: float = Field(default=60.0, description="HTTP timeout per request.")
    retries: int = Field(default=5, description="HTTP retries, with exponential backoff.")

    def source(self, name: str, synthetic_dir: str) -> ReleaseSource:
        if name == SYNTHETIC:
            return ReleaseSource(
                name=SYNTHETIC,
                kind="local",
                path=synthetic_dir,
                description="the embedded synthetic release",
            )
        if name in self.local_releases:
            return ReleaseSource(
                name=name,
                kind="local",
                path=self.local_releases[name],
                description=f"local directory {self.local_releases[name]}",
            )
        # Drop-in directories: <data root>/releases/incoming/<name>/ (beside the synthetic
        # release's directory), picked up by release_sensor.
        incoming = incoming_releases(Path(synthetic_dir).parent)
        if name in incoming:
            return ReleaseSource(
                name=name,
                kind="local",
                path=str(incoming[name]),
                description=f"drop-in directory {incoming[name]}",
            )
        if name in KNOWN_RELEASES:
            known = KNOWN_RELEASES[name]
            if name in self.mirrors:
                return replace(
                    known,
                    base_url=self.mirrors[name],
                    description=f"{known.description} (mirror {self.mirrors[name]})",
                )
            return known
        raise dg.Failure(
            f"unknown release {name!r}: not a known public release "
            f"({', '.join(KNOWN_RELEASES)}), not '{SYNTHETIC}', not in "
            f"{LOCAL_RELEASES_ENV} and not a directory under "
            f"{Path(synthetic_dir).parent / 'incoming'}"
        )


def _json_env(name: str) -> dict[str, str]:
    raw = os.environ.get(name, "").strip()
    try:
        value = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object of name -> path or URL")
    return value


def registry_from_env() -> ReleaseRegistry:
    local = _json_env(LOCAL_RELEASES_ENV)
    bad = [k for k in local if not RELEASE_NAME.match(k)]
    if bad:
        raise ValueError(f"{LOCAL_RELEASES_ENV}: invalid release name(s) {bad}")
    mirrors = _json_env(MIRRORS_ENV)
    unknown = [k for k in mirrors if k not in KNOWN_RELEASES]
    if unknown:
        raise ValueError(f"{MIRRORS_ENV}: {unknown} are not known public releases")
    return ReleaseRegistry(local_releases=local, mirrors=mirrors)


class ReleaseWatch(dg.ConfigurableResource):
    """What ``release_sensor`` watches besides the local releases (which it always watches).

    Public releases are opt-in, since a first ingest downloads tens of GB: list them in
    ``L1000_WATCH_RELEASES`` (comma-separated, or ``all``). A mirror from
    ``L1000_RELEASE_MIRRORS`` is watched instead of the original when one is configured.
    """

    public: list[str] = Field(
        default_factory=list,
        description="Public releases to watch (GSE92742, GSE70138, LINCS2020).",
    )
    http_interval_seconds: int = Field(
        default=3600, ge=0, description="Seconds between checks of an HTTP source (HEAD requests)."
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="HTTP timeout per request.")
    settle: bool = Field(
        default=True,
        description=(
            "Local directories: request a version only once two checks in a row saw it (a copy in "
            "progress is not ingested half-way)."
        ),
    )


def watch_from_env() -> ReleaseWatch:
    raw = os.environ.get(WATCH_ENV, "").strip()
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if [n.lower() for n in names] == ["all"]:
        names = list(KNOWN_RELEASES)
    unknown = [n for n in names if n not in KNOWN_RELEASES]
    if unknown:
        raise ValueError(
            f"{WATCH_ENV}: {unknown} are not known public releases "
            f"({', '.join(KNOWN_RELEASES)}); local releases are always watched"
        )
    interval = os.environ.get(HTTP_INTERVAL_ENV, "").strip()
    return ReleaseWatch(
        public=names, **({"http_interval_seconds": int(interval)} if interval else {})
    )


def local_name(remote: str) -> str:
    """The name a downloaded file is stored under (gunzipped)."""
    return remote[:-3] if remote.endswith(".gz") else remote


def release_source(name: str, registry: ReleaseRegistry, lake: LakeResource) -> ReleaseSource:
    """The source of release ``name`` (the synthetic release lives under the data root)."""
    return registry.source(name, str(lake.release_dir(SYNTHETIC)))


def release_file_names(source: ReleaseSource) -> dict[str, str]:
    """Role -> file name in the release's directory (downloads are stored gunzipped)."""
    if source.kind == "local":
        return dict(source.files)
    return {r: local_name(n) for r, n in source.files.items() if r != "checksums"}


def release_root(source: ReleaseSource, lake: LakeResource) -> Path:
    """The directory holding the release's files: in place for local releases."""
    return Path(source.path) if source.kind == "local" else lake.release_dir(source.name)
