"""The small manifest beside a query file of another platform in the watched queries folder.

``<file>.json`` beside ``<file>`` (``experiment.csv.json`` beside ``experiment.csv``) says
how to read it, as ``l1000 read-across`` options do::

    {"platform": "rnaseq", "samples": "experiment_samples.csv"}

Keys: ``platform`` (``zscores``, ``rnaseq``, ``de``, ``l1000-level3``), ``samples`` and
``gene_map`` (file names relative to the manifest), ``count_transform``, ``scale``,
``de_value``, ``control_spread``, ``min_landmarks``, ``impute``. A file without a manifest
is level-4-like z-scores, as before. Files a manifest names (sample sheets, mappings) are
not queries themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from l1000_assets.core.errors import L1000InputError

MANIFEST_SUFFIX = ".json"
OPTION_KEYS = (
    "count_transform",
    "scale",
    "de_value",
    "control_spread",
    "min_landmarks",
    "impute",
)


@dataclass(frozen=True)
class QueryManifest:
    platform: str = "zscores"
    samples: Path | None = None
    gene_map: Path | None = None
    options: dict = field(default_factory=dict)  # PlatformOptions fields

    def referenced(self) -> list[Path]:
        return [p for p in (self.samples, self.gene_map) if p is not None]


def manifest_path(query: Path) -> Path:
    return query.with_name(query.name + MANIFEST_SUFFIX)


def read_manifest(query: str | Path) -> QueryManifest:
    """The manifest of ``query`` (defaults when it has none)."""
    from l1000_assets.core.readacross.platforms.inputs import PLATFORMS, PlatformOptions

    path = manifest_path(Path(query))
    if not path.is_file():
        return QueryManifest()
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise L1000InputError(path, f"not a JSON manifest: {exc}") from exc
    if not isinstance(data, dict):
        raise L1000InputError(path, "a manifest is a JSON object (platform, samples, ...)")
    unknown = sorted(set(data) - {"platform", "samples", "gene_map", *OPTION_KEYS})
    if unknown:
        raise L1000InputError(path, f"unknown manifest key(s): {', '.join(unknown)}")
    platform = data.get("platform", "zscores")
    if platform not in PLATFORMS:
        raise L1000InputError(path, f"platform {platform!r}: one of {', '.join(PLATFORMS)}")
    names = {f.name for f in fields(PlatformOptions)}
    options = {k: data[k] for k in OPTION_KEYS if k in data and k in names}

    def beside(key: str) -> Path | None:
        if not data.get(key):
            return None
        target = path.parent / str(data[key])
        if not target.is_file():
            raise L1000InputError(path, f"{key} file {data[key]!r} not found beside it")
        return target

    return QueryManifest(platform, beside("samples"), beside("gene_map"), options)
