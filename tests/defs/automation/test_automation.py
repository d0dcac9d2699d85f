"""The automation conditions attached to the asset graph, evaluated against a real instance."""

import dagster as dg

from l1000_assets.definitions import defs


def _materialized(instance, key, partitions=None):
    for p in partitions or [None]:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=p))


def test_catalog_does_not_wait_for_read_across_results_but_follows_them():
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    warehouse = dg.AssetKey("warehouse")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cell_line", ["A375", "MCF7"])
    instance.add_dynamic_partitions("release", ["synthetic"])
    deps = graph.get(warehouse).parent_keys
    assert dg.AssetKey("read_across_results") in deps
    selection = dg.AssetSelection.assets(warehouse)
    # The sensor's first tick sees an empty lake: nothing to do.
    start = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, asset_selection=selection
    )
    assert start.total_requested == 0
    for key in deps - {dg.AssetKey("read_across_results")}:
        node = graph.get(key)
        keys = (
            node.partitions_def.get_partition_keys(dynamic_partitions_store=instance)
            if node.partitions_def
            else None
        )
        _materialized(instance, key, keys)
    first = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, asset_selection=selection, cursor=start.cursor
    )
    assert first.total_requested == 1  # read-across results missing: built anyway
    _materialized(instance, warehouse)
    quiet = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, asset_selection=selection, cursor=first.cursor
    )
    assert quiet.total_requested == 0
    _materialized(instance, dg.AssetKey("read_across_results"))
    again = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, asset_selection=selection, cursor=quiet.cursor
    )
    assert again.total_requested == 1  # new results: the catalog is rebuilt


def test_downstream_groups_are_eager_and_read_across_is_left_to_its_sensor():
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    labels = {
        key.to_user_string(): graph.get(key).automation_condition.get_label()
        for key in graph.get_all_asset_keys()
        if graph.get(key).automation_condition is not None
    }
    assert labels["embedding_model"] == "eager"
    assert labels["evaluation_metrics"] == "eager"
    assert labels["profile_embeddings"] == "eager"
    assert labels["release_metadata"] == "on_new_release_data"
    assert labels["warehouse"].startswith("eager (query results and evaluation metrics optional)")
    assert "read_across_results" not in labels


def test_a_new_split_partition_is_trained_and_the_evaluation_waits_for_it():
    definitions = defs()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("cell_line", ["A375"])
    instance.add_dynamic_partitions("release", ["synthetic"])
    _materialized(instance, dg.AssetKey("landmark_profiles"), ["A375"])
    _materialized(instance, dg.AssetKey("release_metadata"), ["synthetic"])
    model = dg.AssetSelection.assets("perturbagen_split", "evaluation_metrics")
    start = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, asset_selection=model
    )
    assert start.total_requested == 0  # no split partition yet
    instance.add_dynamic_partitions("split", ["all", "split_0"])
    tick = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, asset_selection=model, cursor=start.cursor
    )
    requested = {
        (result.key.to_user_string(), key)
        for result in tick.results
        if result.true_subset.size
        for key in result.true_subset.expensively_compute_partition_keys()
    }
    # The new splits run at once; the evaluation waits for every split's ranks.
    assert requested == {("perturbagen_split", "all"), ("perturbagen_split", "split_0")}
