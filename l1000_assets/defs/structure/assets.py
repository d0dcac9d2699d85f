"""Chemical structure of the lake's compounds: ECFP4 fingerprints (the structure baseline
of Donner et al.'s Table 2 and the catalog's structural-similarity macro).

A stage of its own: it depends on the releases' metadata only (not on any model), and what
it holds is a property of the compounds, not of expression profiles.
"""

import json

import dagster as dg

from l1000_assets.core.errors import L1000InputError
from l1000_assets.core.formats.info_tables import read_info_table
from l1000_assets.core.releases.local import find_release_files
from l1000_assets.core.releases.synthetic import MANIFEST_NAME
from l1000_assets.core.structure.fingerprints import FINGERPRINT
from l1000_assets.core.structure.table import compound_smiles, write_fingerprints
from l1000_assets.lib.keys import (
    ALL_PARTITIONS,
    COMPOUND_FINGERPRINTS,
    RELEASE_METADATA,
    STRUCTURE_GROUP,
)
from l1000_assets.lib.metadata import parquet_column_schema, table_preview
from l1000_assets.lib.releases import (
    ReleaseRegistry,
    release_file_names,
    release_root,
    release_source,
)
from l1000_assets.lib.resources import LakeResource


def _pert_info(name: str, lake: LakeResource, releases: ReleaseRegistry):
    """The release's raw pert_info table (SMILES are not in the canonical metadata), and
    whether the release is synthetic; None where the release has no pert_info."""
    source = release_source(name, releases, lake)
    root = release_root(source, lake)
    files = release_file_names(source)
    if "pert_info" in files:
        path = root / files["pert_info"]
    else:
        try:
            path = find_release_files(root).pert_info
        except L1000InputError:
            path = None
    manifest = root / MANIFEST_NAME
    synthetic = manifest.exists() and json.loads(manifest.read_text()).get("synthetic") is True
    if path is None or not path.exists():
        return None, synthetic
    return read_info_table(path), synthetic


@dg.asset(
    key=COMPOUND_FINGERPRINTS,
    group_name=STRUCTURE_GROUP,
    deps=[dg.AssetDep(RELEASE_METADATA, partition_mapping=ALL_PARTITIONS)],
    kinds={"parquet", "rdkit"},
    description=(
        f"ECFP4 fingerprints ({FINGERPRINT}, bit-packed, 256 bytes each) of every compound "
        "with a SMILES in the releases' pert_info tables: the structure baseline of the "
        "drug-level evaluation and the catalog's similar_structures macro."
    ),
)
def compound_fingerprints(
    context: dg.AssetExecutionContext, lake: LakeResource, releases: ReleaseRegistry
) -> dg.MaterializeResult:
    per_release, synthetic = {}, []
    for name in lake.metadata_releases():
        try:
            table, is_synthetic = _pert_info(name, lake, releases)
        except (L1000InputError, ValueError) as exc:
            context.log.warning(f"{name}: no pert_info read ({exc})")
            continue
        if is_synthetic:
            synthetic.append(name)
        if table is None:
            context.log.info(f"{name}: no pert_info table, no structures")
            continue
        per_release[name] = compound_smiles(table, name)
        context.log.info(f"{name}: {len(per_release[name]):,} compounds with a SMILES")
    path = lake.compound_fingerprints_path
    table, n_invalid = write_fingerprints(per_release, path)
    if n_invalid:
        context.log.warning(f"{n_invalid} SMILES RDKit could not read: left out")
    preview = table.drop(["ecfp4"]).slice(0, 10).to_pandas()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": table.num_rows,
            "path": dg.MetadataValue.path(str(path)),
            "fingerprint": FINGERPRINT,
            "n_unreadable_smiles": n_invalid,
            "releases": ", ".join(sorted(per_release)) or "none",
            "synthetic": bool(synthetic),
            "synthetic_releases": ", ".join(synthetic) or "none",
            "preview": table_preview(preview, rows=10),
            "dagster/column_schema": parquet_column_schema(path),
        }
    )
