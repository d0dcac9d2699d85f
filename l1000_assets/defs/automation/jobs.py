"""Jobs the release sensor and the weekly schedule launch, one release partition per run."""

import dagster as dg

from l1000_assets.lib.keys import RELEASE_FILES, RELEASE_METADATA

release_ingest_job = dg.define_asset_job(
    name="release_ingest_job",
    selection=dg.AssetSelection.assets(RELEASE_FILES, RELEASE_METADATA),
    description=(
        "Fetch (or fingerprint) one release's files and parse its metadata, with their checks. "
        "Launched by release_sensor when a release is new or changed. Everything downstream "
        "follows by declarative automation."
    ),
)

release_files_job = dg.define_asset_job(
    name="release_files_job",
    selection=dg.AssetSelection.assets(RELEASE_FILES),
    description=(
        "Re-check one release's files: HEAD requests (or fingerprints) and downloads of what "
        "changed only. Launched weekly for every release; release_metadata and everything "
        "downstream follow only when the files' data version changed."
    ),
)
