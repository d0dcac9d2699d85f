"""Which releases exist and where their files live."""

import json
import os

import dagster as dg
from pydantic import Field

from l1000_assets.core.sources import KNOWN_RELEASES, RELEASE_NAME, ReleaseSource

LOCAL_RELEASES_ENV = "L1000_LOCAL_RELEASES"
SYNTHETIC = "synthetic"


class ReleaseRegistry(dg.ConfigurableResource):
    """The release sources: the public ones (GSE92742, GSE70138, LINCS2020), the embedded
    synthetic release, and local directories a user names.

    Local releases come from ``L1000_LOCAL_RELEASES``: a JSON object
    ``{"name": "/path/to/dir", ...}``. Each directory holds a level-4 GCTX (or a GCT) and
    the metadata tables, found by their GEO-style names.
    """

    local_releases: dict[str, str] = Field(
        default_factory=dict, description="Local release name -> directory of its files.")
    timeout_seconds: float = Field(default=60.0, description="HTTP timeout per request.")
    retries: int = Field(default=5, description="HTTP retries, with exponential backoff.")

    def source(self, name: str, synthetic_dir: str) -> ReleaseSource:
        if name == SYNTHETIC:
            return ReleaseSource(name=SYNTHETIC, kind="local", path=synthetic_dir,
                                 description="the embedded synthetic release")
        if name in self.local_releases:
            return ReleaseSource(name=name, kind="local", path=self.local_releases[name],
                                 description=f"local directory {self.local_releases[name]}")
        if name in KNOWN_RELEASES:
            return KNOWN_RELEASES[name]
        raise dg.Failure(f"unknown release {name!r}: not a known public release "
                         f"({', '.join(KNOWN_RELEASES)}), not '{SYNTHETIC}', and not in "
                         f"{LOCAL_RELEASES_ENV}")


def registry_from_env() -> ReleaseRegistry:
    raw = os.environ.get(LOCAL_RELEASES_ENV, "").strip()
    local = json.loads(raw) if raw else {}
    bad = [k for k in local if not RELEASE_NAME.match(k)]
    if bad:
        raise ValueError(f"{LOCAL_RELEASES_ENV}: invalid release name(s) {bad}")
    return ReleaseRegistry(local_releases=local)
