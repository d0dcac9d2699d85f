"""``default_splits``: the split partitions every lake starts with (``all`` and ``split_0``).

Split keys are the user's to add (a ``split_<seed>`` in the UI's partition picker trains one
more evaluation model); this sensor only makes sure that, once the lake has profiles, the
served model (``all``) and one evaluation split (``split_0``) exist, so that declarative
automation carries a new release through the model stage without a click. It adds them
once per instance (its cursor remembers), so a split deleted in the UI stays deleted.
"""

import dagster as dg

from l1000_assets.lib.automation import automation_default_status
from l1000_assets.lib.partitions import DEFAULT_SPLITS, missing_partitions, split_partitions
from l1000_assets.lib.resources import LakeResource

ADDED = "added"


@dg.sensor(
    name="default_splits",
    minimum_interval_seconds=60,
    default_status=automation_default_status(),
    description=(
        "Adds the split partitions all (every perturbagen trained: the served model) and "
        "split_0 (20% held out: the evaluation) once the lake has landmark profiles, once per "
        "instance. Add more splits (split_1, split_2...) in the partition picker of "
        "embedding_model: evaluation_metrics then pools their ranks."
    ),
)
def default_splits(context: dg.SensorEvaluationContext, lake: LakeResource):
    if context.cursor == ADDED:
        return dg.SkipReason(f"the default splits ({', '.join(DEFAULT_SPLITS)}) were added")
    if not lake.landmark_files():
        return dg.SkipReason("no landmark profiles in the lake yet")
    new = missing_partitions(context.instance, split_partitions, DEFAULT_SPLITS)
    context.update_cursor(ADDED)
    if not new:
        return dg.SkipReason("the default splits exist")
    context.log.info(f"adding split partitions: {new}")
    return dg.SensorResult(dynamic_partitions_requests=[split_partitions.build_add_request(new)])
