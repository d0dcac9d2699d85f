"""Asset keys and group names, shared by the stages that depend on each other's assets."""

import dagster as dg

# releases
SYNTHETIC_RELEASE = dg.AssetKey("synthetic_release")
RELEASE_FILES = dg.AssetKey("release_files")
RELEASE_METADATA = dg.AssetKey("release_metadata")
# lake
LANDMARK_PROFILES = dg.AssetKey("landmark_profiles")
# model
PERTURBAGEN_SPLIT = dg.AssetKey("perturbagen_split")
NORMALIZATION_STATS = dg.AssetKey("normalization_stats")
EMBEDDING_MODEL = dg.AssetKey("embedding_model")
# evaluation
EVALUATION_RANKS = dg.AssetKey("evaluation_ranks")
EVALUATION_METRICS = dg.AssetKey("evaluation_metrics")
# embeddings
PROFILE_EMBEDDINGS = dg.AssetKey("profile_embeddings")
SIGNATURE_EMBEDDINGS = dg.AssetKey("signature_embeddings")
PERTURBAGEN_EMBEDDINGS = dg.AssetKey("perturbagen_embeddings")
ZSCORE_SIGNATURES = dg.AssetKey("zscore_signatures")
# read-across
READ_ACROSS_RESULTS = dg.AssetKey("read_across_results")
PERTURBAGEN_MAP = dg.AssetKey("perturbagen_map")
# structure
COMPOUND_FINGERPRINTS = dg.AssetKey("compound_fingerprints")
# catalog
WAREHOUSE = dg.AssetKey("warehouse")

RELEASES_GROUP = "releases"
LAKE_GROUP = "lake"
MODEL_GROUP = "model"
EVALUATION_GROUP = "evaluation"
EMBEDDINGS_GROUP = "embeddings"
READ_ACROSS_GROUP = "read_across"
STRUCTURE_GROUP = "structure"
CATALOG_GROUP = "catalog"

ALL_PARTITIONS = dg.AllPartitionMapping()
"""A dependency on every cell line (or release, or split) partition of the upstream asset."""
