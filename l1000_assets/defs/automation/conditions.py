"""Declarative automation: new release data flows through to the lake, the model, embeddings,
evaluation and the catalog without anyone clicking an asset.

* ``release_metadata[release]`` runs when its ``release_files`` partition gets a new *data
  version* (the hash of the files), or when the partition is new. A weekly re-check that
  finds nothing new therefore stops there.
* Every asset downstream of ``release_metadata`` in the groups below is ``eager``: it runs
  once any dependency has been updated, as soon as none of them is missing or in progress.
  New ``cell_line`` partitions (from a release's metadata) run as soon as they appear.
  ``landmark_profiles`` has a single-run backfill policy, so all its cell lines go into one
  backfill run that reads each release once.
* The model stage is partitioned by ``split``: a new split partition (added in the UI, or
  ``all`` and ``split_0`` by the ``default_splits`` sensor) is newly missing, so its split,
  statistics, model and ranks run as soon as it appears, and new lake data retrains every
  split. ``evaluation_metrics`` depends on every ``evaluation_ranks`` partition: it waits
  while any split is missing or in progress, then pools them all. The embeddings depend on
  the served model (``embedding_model[all]``) only, so an extra evaluation split never
  re-embeds the lake. ``evaluation_ranks`` also reads the gene-set signature store and its
  tau reference for its gene-set protocol; they are built on request, so the ranks do not
  wait for them (:func:`evaluation_ranks_condition`), and run again when they change.
* Assets that already carry an automation condition keep it.

The conditions are attached in ``l1000_assets/definitions.py`` (:func:`with_automation`), by
selection, so assets added later to these groups are covered without editing them.
``release_automation_sensor`` evaluates them every 30 seconds.
"""

import dagster as dg

from l1000_assets.lib.automation import automation_default_status
from l1000_assets.lib.keys import (
    CONNECTIVITY_REFERENCE,
    CONNECTIVITY_RESULTS,
    CONNECTIVITY_SIGNATURES,
    EVALUATION_METRICS,
    EVALUATION_RANKS,
    READ_ACROSS_ENRICHMENT,
    READ_ACROSS_RESULTS,
    RELEASE_METADATA,
    WAREHOUSE,
)

#: Groups whose assets refresh automatically when release data changes. "read_across" and
#: "connectivity" are not here: their results are driven by their queries, and the signature
#: store (a pass over every release) is rebuilt when asked.
AUTOMATED_GROUPS = ("lake", "structure", "model", "embeddings", "evaluation", "catalog")
AUTOMATION_INTERVAL_S = 30


def downstream_selection() -> dg.AssetSelection:
    return dg.AssetSelection.assets(RELEASE_METADATA).downstream(
        include_self=False
    ) & dg.AssetSelection.groups(*AUTOMATED_GROUPS)


def on_new_release_data() -> dg.AutomationCondition:
    """New partition, or the release files' data version changed; not while they run."""
    AC = dg.AutomationCondition
    return (
        (
            AC.newly_missing()
            | AC.any_deps_match(AC.data_version_changed()).with_label("release_files_changed")
        ).since_last_handled()
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label("on_new_release_data")


def eager_with_optional_deps(optional: dg.AssetSelection, label: str) -> dg.AutomationCondition:
    """``eager``, except that the dependencies in ``optional`` may be missing (the asset
    runs without them, and again when they arrive)."""
    AC = dg.AutomationCondition
    return (
        AC.in_latest_time_window()
        & (AC.newly_missing() | AC.any_deps_updated()).since_last_handled()
        & ~AC.any_deps_missing().ignore(optional)
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    ).with_label(label)


def evaluation_ranks_condition() -> dg.AutomationCondition:
    """``eager`` for ``evaluation_ranks``, except that the signature store and the tau
    reference (its gene-set protocol's input, built on request) may be missing: the other
    protocols run without them."""
    return eager_with_optional_deps(
        dg.AssetSelection.assets(CONNECTIVITY_SIGNATURES, CONNECTIVITY_REFERENCE),
        "eager (gene-set store optional)",
    )


def catalog_condition() -> dg.AutomationCondition:
    """``eager`` for the catalog, except that query results (read-across, gene-set queries
    and the statistics on their hits) and the evaluation metrics (whose views it also
    creates) are optional: query results exist only once a user has dropped a query file,
    and the catalog must not wait for them (their views are empty tables until then). When
    results arrive, the catalog is rebuilt."""
    return eager_with_optional_deps(
        dg.AssetSelection.assets(
            READ_ACROSS_RESULTS, CONNECTIVITY_RESULTS, READ_ACROSS_ENRICHMENT, EVALUATION_METRICS
        ),
        "eager (query results and evaluation metrics optional)",
    )


def with_automation(defs: dg.Definitions) -> dg.Definitions:
    """``defs`` with the automation conditions above attached to the assets that have none."""
    downstream = downstream_selection().resolve(defs.resolve_asset_graph())

    def attach(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.automation_condition is not None:
            return spec
        if spec.key == RELEASE_METADATA:
            return spec.replace_attributes(automation_condition=on_new_release_data())
        if spec.key == WAREHOUSE:
            return spec.replace_attributes(automation_condition=catalog_condition())
        if spec.key == EVALUATION_RANKS:
            return spec.replace_attributes(automation_condition=evaluation_ranks_condition())
        if spec.key in downstream:
            return spec.replace_attributes(automation_condition=dg.AutomationCondition.eager())
        return spec

    return defs.map_asset_specs(func=attach)


release_automation_sensor = dg.AutomationConditionSensorDefinition(
    "release_automation_sensor",
    target=dg.AssetSelection.assets(RELEASE_METADATA) | downstream_selection(),
    default_status=automation_default_status(),
    minimum_interval_seconds=AUTOMATION_INTERVAL_S,
    description=(
        "Runs release_metadata when a release's files change, then everything downstream of it "
        "in the lake, model, embeddings, evaluation and catalog groups (eager), partitions "
        "included; backfills for many cell lines at once."
    ),
)
