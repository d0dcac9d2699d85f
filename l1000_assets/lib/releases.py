"""Which releases exist and where their files live."""

import json
import os
from dataclasses import replace
from pathlib import Path

import dagster as dg
from pydantic import Field

from l1000_assets.core.release_watch import incoming_releases
from l1000_assets.core.sources import KNOWN_RELEASES, RELEASE_NAME, ReleaseSource

LOCAL_RELEASES_ENV = "L1000_LOCAL_RELEASES"
MIRRORS_ENV = "L1000_RELEASE_MIRRORS"
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
        default_factory=dict, description="Local release name -> directory of its files.")
    mirrors: dict[str, str] = Field(
        default_factory=dict, description="Public release name -> base URL of a mirror.")
    timeout_seconds: float = Field(default=60.0, description="HTTP timeout per request.")
    retries: int = Field(default=5, description="HTTP retries, with exponential backoff.")

    def source(self, name: str, synthetic_dir: str) -> ReleaseSource:
        if name == SYNTHETIC:
            return ReleaseSource(name=SYNTHETIC, kind="local", path=synthetic_dir,
                                 description="the embedded synthetic release")
        if name in self.local_releases:
            return ReleaseSource(name=name, kind="local", path=self.local_releases[name],
                                 description=f"local directory {self.local_releases[name]}")
        # Drop-in directories: <data root>/releases/incoming/<name>/ (beside the synthetic
        # release's directory), picked up by release_sensor.
        incoming = incoming_releases(Path(synthetic_dir).parent)
        if name in incoming:
            return ReleaseSource(name=name, kind="local", path=str(incoming[name]),
                                 description=f"drop-in directory {incoming[name]}")
        if name in KNOWN_RELEASES:
            known = KNOWN_RELEASES[name]
            if name in self.mirrors:
                return replace(known, base_url=self.mirrors[name],
                               description=f"{known.description} (mirror {self.mirrors[name]})")
            return known
        raise dg.Failure(f"unknown release {name!r}: not a known public release "
                         f"({', '.join(KNOWN_RELEASES)}), not '{SYNTHETIC}', not in "
                         f"{LOCAL_RELEASES_ENV} and not a directory under "
                         f"{Path(synthetic_dir).parent / 'incoming'}")


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
