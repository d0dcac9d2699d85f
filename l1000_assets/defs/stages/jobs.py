"""One named job per stage, each tagged ``l1000/stage``: ``l1000 demo`` runs these, so its
runs show in the UI's Runs page by stage name (not ``__ephemeral_asset_job__``), carry the
stage tag to filter on, and can be re-executed from the UI (the job is in the code location).

The release sensor's ``release_ingest_job`` and the Dask ``split_models_job`` stay as they are;
the stage jobs run with the default executor.
"""

import dagster as dg

from l1000_assets.lib.keys import (
    COMPOUND_FINGERPRINTS,
    CONNECTIVITY_REFERENCE,
    CONNECTIVITY_RESULTS,
    CONNECTIVITY_SIGNATURES,
    EMBEDDING_MODEL,
    EVALUATION_METRICS,
    EVALUATION_RANKS,
    LANDMARK_PROFILES,
    NORMALIZATION_STATS,
    PERTURBAGEN_EMBEDDINGS,
    PERTURBAGEN_MAP,
    PERTURBAGEN_SPLIT,
    PROFILE_EMBEDDINGS,
    READ_ACROSS_ENRICHMENT,
    READ_ACROSS_RESULTS,
    RELEASE_FILES,
    RELEASE_METADATA,
    SIGNATURE_EMBEDDINGS,
    STAGE_TAG,
    SYNTHETIC_RELEASE,
    WAREHOUSE,
    ZSCORE_SIGNATURES,
)
from l1000_assets.lib.partitions import (
    cell_line_partitions,
    release_partitions,
    split_partitions,
)

#: (job name, stage tag, assets, partitions, what the job does), in dependency order.
STAGE_JOBS = (
    ("synthetic_release_job", "releases", [SYNTHETIC_RELEASE], None,
     "Generate the synthetic release (the demo's data, with known ground truth)."),
    ("release_metadata_job", "releases", [RELEASE_FILES, RELEASE_METADATA], release_partitions,
     "One release's files (fingerprints or downloads) and canonical metadata tables."),
    ("landmark_lake_job", "lake", [LANDMARK_PROFILES], cell_line_partitions,
     "The landmark lake of the cell lines selected (one pass over each release)."),
    ("structure_job", "structure", [COMPOUND_FINGERPRINTS], None,
     "ECFP4 fingerprints of every compound with a SMILES (the drug-level Tanimoto and combo)."),
    ("connectivity_store_job", "connectivity", [CONNECTIVITY_SIGNATURES, CONNECTIVITY_REFERENCE],
     None, "The BING-space signature store and the tau reference (gene-set queries)."),
    ("model_job", "model",
     [PERTURBAGEN_SPLIT, NORMALIZATION_STATS, EMBEDDING_MODEL, EVALUATION_RANKS], split_partitions,
     "One split partition's split, statistics, model training and evaluation ranks (all: the "
     "served model; split_<seed>: a held-out split for the evaluation)."),
    ("evaluation_job", "evaluation", [EVALUATION_METRICS], None,
     "The evaluation metrics pooled over the split partitions' ranks."),
    ("embeddings_job", "embeddings", [PROFILE_EMBEDDINGS, ZSCORE_SIGNATURES], cell_line_partitions,
     "Profile embeddings by the served model and MODZ z-score signatures, per cell line."),
    ("embedding_aggregates_job", "embeddings", [SIGNATURE_EMBEDDINGS, PERTURBAGEN_EMBEDDINGS],
     None, "Signature and perturbagen embeddings (means of the profile embeddings)."),
    ("read_across_job", "read_across", [READ_ACROSS_RESULTS, PERTURBAGEN_MAP], None,
     "Read-across of the query folder's profiles and the perturbagen map."),
    ("connectivity_job", "connectivity", [CONNECTIVITY_RESULTS, READ_ACROSS_ENRICHMENT], None,
     "Gene-set queries of the query folder, and MOA/target statistics on the read-across hits."),
    ("catalog_job", "catalog", [WAREHOUSE], None, "The DuckDB catalog, rebuilt whole."),
)  # fmt: skip

stage_jobs = [
    dg.define_asset_job(
        name=name,
        selection=dg.AssetSelection.assets(*keys),
        partitions_def=partitions,
        tags={STAGE_TAG: stage},
        description=f"{description} Stage {stage!r} (runs tagged {STAGE_TAG}={stage}).",
    )
    for name, stage, keys, partitions, description in STAGE_JOBS
]
