"""The queries folder sensor: a query file dropped there is ranked by the current model."""

from pathlib import Path

import dagster as dg

from l1000_assets.core.cursor import dump_cursor, load_cursor
from l1000_assets.core.embeddings.vectors import recorded_model_version
from l1000_assets.core.readacross.folder import scan_queries
from l1000_assets.core.readacross.query_files import QUERY_SUFFIXES
from l1000_assets.lib.automation import automation_default_status
from l1000_assets.lib.keys import PERTURBAGEN_MAP, READ_ACROSS_RESULTS
from l1000_assets.lib.resources import LakeResource

QUERY_FILE_TAG = "l1000/query_file"


def _request(run_key: str, files: list[str], tags: dict[str, str]) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key,
        tags=tags,
        run_config={"ops": {READ_ACROSS_RESULTS.path[-1]: {"config": {"files": files}}}},
    )


@dg.sensor(
    name="read_across_queries",
    asset_selection=[READ_ACROSS_RESULTS, PERTURBAGEN_MAP],
    minimum_interval_seconds=30,
    default_status=automation_default_status(),
    description=(
        "Watches the queries folder (L1000_QUERIES_DIR, default <data root>/queries) and "
        "runs read_across_results and perturbagen_map for every new or changed GCT, GCTX, "
        "CSV or TSV file, one run per file; a manifest <file>.json beside a file says its "
        "platform and sample sheet (core/readacross/manifest.py), and a change to either "
        "re-ranks the file. A file is handled once per size and "
        "modification time, so a bad file fails one run and is not retried until it "
        "changes. When the perturbagen embeddings change (a new model), every file is "
        "ranked again in one run."
    ),
)
def read_across_queries(context: dg.SensorEvaluationContext, lake: LakeResource):
    embeddings = lake.perturbagen_embeddings_path
    if not embeddings.exists() or not (lake.model_dir / "card.json").exists():
        return dg.SkipReason(
            "no model or perturbagen embeddings yet: materialize "
            "embedding_model and the embeddings group first"
        )
    state = load_cursor(context.cursor)
    reference = recorded_model_version(embeddings)
    changed, unsupported, seen = scan_queries(lake.queries_dir, state.get("files", {}))
    for path in unsupported:
        context.log.warning(
            f"{path}: not a query file (expected {', '.join(QUERY_SUFFIXES)}); ignored"
        )
    previous = state.get("reference")
    if (
        previous
        and previous != reference
        and any(Path(k).suffix.lower() in QUERY_SUFFIXES for k in seen)
    ):
        context.log.info(
            f"perturbagen embeddings changed ({previous} -> {reference}): "
            "ranking every query file again"
        )
        requests = [_request(f"all:{reference}", [], {QUERY_FILE_TAG: "all"})]
    else:
        requests = [
            _request(
                f"{path.resolve()}:{seen[str(path.resolve())]}",
                [str(path)],
                {QUERY_FILE_TAG: path.name},
            )
            for path in changed
        ]
    context.update_cursor(dump_cursor({"reference": reference, "files": seen}))
    if not requests:
        return dg.SkipReason(f"no new or changed query files in {lake.queries_dir}")
    for path in changed:
        context.log.info(f"new or changed query file: {path}")
    return requests
