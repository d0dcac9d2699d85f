"""The queries folder sensor: a file dropped there is ranked, by the read-across when it
holds profiles, by the gene-set queries when it holds gene sets."""

import json
from pathlib import Path

import dagster as dg

from l1000_assets.core.connectivity.gene_sets import GENE_SET_SUFFIXES, is_gene_set_file
from l1000_assets.core.connectivity.reference import META_FILE as REFERENCE_META
from l1000_assets.core.connectivity.results import REFERENCE_DIR, STORE_DIR
from l1000_assets.core.connectivity.store import META_FILE as STORE_META
from l1000_assets.core.cursor import dump_cursor, load_cursor
from l1000_assets.core.embeddings.vectors import recorded_model_version
from l1000_assets.core.readacross.folder import scan_queries
from l1000_assets.core.readacross.query_files import QUERY_SUFFIXES, is_query_file
from l1000_assets.lib.automation import automation_default_status
from l1000_assets.lib.keys import CONNECTIVITY_RESULTS, PERTURBAGEN_MAP, READ_ACROSS_RESULTS
from l1000_assets.lib.resources import LakeResource

QUERY_FILE_TAG = "l1000/query_file"
PROFILE_ASSETS = [READ_ACROSS_RESULTS, PERTURBAGEN_MAP]
GENE_SET_ASSETS = [CONNECTIVITY_RESULTS]


def _request(
    run_key: str, files: list[str], tags: dict[str, str], assets: list[dg.AssetKey]
) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key,
        tags=tags,
        asset_selection=assets,
        run_config={"ops": {assets[0].path[-1]: {"config": {"files": files}}}},
    )


def _is_any_query(path: Path) -> bool:
    return is_query_file(path) or is_gene_set_file(path)


def _version(path: Path) -> str | None:
    """The ``version`` recorded in a store's or reference's JSON, None when not built."""
    try:
        return json.loads(path.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _connectivity_version(lake: LakeResource) -> str | None:
    """Signature store and tau reference versions together (None: no store yet)."""
    store = _version(lake.connectivity_dir / STORE_DIR / STORE_META)
    if store is None:
        return None
    return f"{store}/{_version(lake.connectivity_dir / REFERENCE_DIR / REFERENCE_META)}"


@dg.sensor(
    name="read_across_queries",
    asset_selection=[*PROFILE_ASSETS, *GENE_SET_ASSETS],
    minimum_interval_seconds=30,
    default_status=automation_default_status(),
    description=(
        "Watches the queries folder (L1000_QUERIES_DIR, default <data root>/queries), one run "
        "per new or changed file: GCT, GCTX and CSV/TSV files of profiles go to "
        "read_across_results and perturbagen_map (a manifest <file>.json beside a file says "
        "its platform and sample sheet, core/readacross/manifest.py, and a change to either "
        "re-ranks the file); gene-set files (GRP, GMT, and CSV/TSV whose header names a gene "
        "and a direction column) go to connectivity_results. A file is handled once per size "
        "and modification time, so a bad file fails one run and is not retried until it "
        "changes. When the perturbagen embeddings change (a new model), every profile file is "
        "ranked again in one run; when the signature store or tau reference changes, every "
        "gene-set file is."
    ),
)
def read_across_queries(context: dg.SensorEvaluationContext, lake: LakeResource):
    state = load_cursor(context.cursor)
    changed, unsupported, seen = scan_queries(
        lake.queries_dir, state.get("files", {}), accept=_is_any_query
    )
    for path in unsupported:
        context.log.warning(
            f"{path}: not a query file (expected {', '.join(QUERY_SUFFIXES)} of profiles, or "
            f"{', '.join(GENE_SET_SUFFIXES)} or a gene/direction table of gene sets); ignored"
        )
    gene_sets = [p for p in changed if is_gene_set_file(p)]
    profiles = [p for p in changed if p not in gene_sets]
    requests, waiting = [], []
    embeddings = lake.perturbagen_embeddings_path
    reference = (
        recorded_model_version(embeddings)
        if embeddings.exists() and (lake.model_dir / "card.json").exists()
        else None
    )
    if reference is None:
        waiting += profiles
    elif state.get("reference") and state["reference"] != reference and _has(seen, is_query_file):
        context.log.info(
            f"perturbagen embeddings changed ({state['reference']} -> {reference}): "
            "ranking every profile file again"
        )
        requests.append(_request(f"all:{reference}", [], {QUERY_FILE_TAG: "all"}, PROFILE_ASSETS))
    else:
        requests += [_file_request(p, seen, PROFILE_ASSETS) for p in profiles]
    connectivity = _connectivity_version(lake)
    if connectivity is None:
        waiting += gene_sets
    elif (
        state.get("connectivity")
        and state["connectivity"] != connectivity
        and _has(seen, is_gene_set_file)
    ):
        context.log.info(
            f"signature store or tau reference changed ({state['connectivity']} -> "
            f"{connectivity}): scoring every gene-set file again"
        )
        requests.append(
            _request(f"gene-sets:{connectivity}", [], {QUERY_FILE_TAG: "all"}, GENE_SET_ASSETS)
        )
    else:
        requests += [_file_request(p, seen, GENE_SET_ASSETS) for p in gene_sets]
    for path in waiting:  # handled once what they need is built
        seen.pop(str(path.resolve()), None)
    context.update_cursor(
        dump_cursor(
            {
                "reference": reference or state.get("reference"),
                "connectivity": connectivity or state.get("connectivity"),
                "files": seen,
            }
        )
    )
    if not requests:
        if waiting:
            return dg.SkipReason(
                f"{len(waiting)} query file(s) wait for what ranks them: materialize "
                "embedding_model and the embeddings group (profiles), or "
                "connectivity_signatures and connectivity_reference (gene sets)"
            )
        return dg.SkipReason(f"no new or changed query files in {lake.queries_dir}")
    for path in changed:
        if path not in waiting:
            context.log.info(f"new or changed query file: {path}")
    return requests


def _file_request(path: Path, seen: dict[str, str], assets: list[dg.AssetKey]) -> dg.RunRequest:
    key = str(path.resolve())
    return _request(f"{key}:{seen[key]}", [str(path)], {QUERY_FILE_TAG: path.name}, assets)


def _has(seen: dict[str, str], kind) -> bool:
    return any(kind(Path(k)) for k in seen if Path(k).exists())
