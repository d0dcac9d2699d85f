"""Dynamic partitions, and the rules their keys follow.

Keys are never typed by hand: ``release`` keys are added by ``release_sensor`` when it finds a
new release source (and by ``synthetic_release`` for the embedded release); ``cell_line`` keys by
``release_metadata`` from the cell ids in each release's own metadata. Both are validated first.

``split`` keys name the perturbagen splits the model stage trains on: ``all`` (every
perturbagen trained: the served model) and ``split_<seed>`` (20% of the perturbagens held out by
a hash seeded with ``<seed>``: the models the evaluation pools). They are user-facing: the
``default_splits`` sensor adds ``all`` and ``split_0`` once, and adding a split is adding a
``split_<seed>`` key in the UI's partition picker. A key of another form fails the run of
``perturbagen_split`` with the forms it accepts (:func:`split_seed`), and every path built from
it is refused (:data:`PARTITION_KEY_RULES`).

A key can still be added by hand (the UI's "Add partition", GraphQL ``addDynamicPartition``),
and every key becomes a directory or file name. So every path built from a key goes through
:func:`check_partition_key` (the rule of its partition, :data:`PARTITION_KEY_RULES`, or
:func:`valid_key` for a partition without one) and
:meth:`~l1000_assets.lib.resources.LakeResource.keyed_path`, which also checks that the path
stays under its directory, before anything is written or swapped.
"""

import os
import re
from collections.abc import Callable

import dagster as dg

from l1000_assets.core.releases.registry import RELEASE_NAME

release_partitions = dg.DynamicPartitionsDefinition(name="release")
cell_line_partitions = dg.DynamicPartitionsDefinition(name="cell_line")
split_partitions = dg.DynamicPartitionsDefinition(name="split")

ALL_SPLIT = "all"
"""The split of the model trained on every perturbagen (nothing held out)."""
SPLIT_PREFIX = "split_"
SPLIT_KEY = re.compile(r"^(all|split_(0|[1-9][0-9]{0,5}))$")
DEFAULT_SPLITS = (ALL_SPLIT, "split_0")
"""The split partitions ``default_splits`` adds (and ``l1000 demo`` trains)."""
SERVED_SPLIT_ENV = "L1000_SERVED_SPLIT"
"""Environment variable naming the split whose model is served (default ``all``)."""

# Real cell line names contain '-' and '.', e.g. SK-N-SH, NCI-H716; nothing that could
# escape a directory or break a Parquet hive path.
CELL_LINE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}$")
#: Any other partition's keys: one plain file name (no separator, no leading dot).
SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=\-]{0,127}$")


def valid_key(key: str) -> bool:
    """A key usable as one file or directory name (:data:`SAFE_KEY`, no ``..``)."""
    return isinstance(key, str) and bool(SAFE_KEY.match(key)) and ".." not in key


def valid_cell_line(key: str) -> bool:
    return isinstance(key, str) and bool(CELL_LINE_KEY.match(key)) and ".." not in key


def valid_release(key: str) -> bool:
    """A release name usable as a partition key and directory name (``RELEASE_NAME``)."""
    return isinstance(key, str) and bool(RELEASE_NAME.match(key)) and ".." not in key


#: Partition name -> the rule its keys follow; partitions not listed follow :func:`valid_key`.
PARTITION_KEY_RULES: dict[str, Callable[[str], bool]] = {
    release_partitions.name: valid_release,
    cell_line_partitions.name: valid_cell_line,
}


class PartitionKeyError(dg.Failure):
    """A partition key that cannot become a path; the message names the partition and key."""

    def __init__(self, partition: str, key: object, problem: str):
        self.partition = partition
        self.key = key
        super().__init__(description=f"{partition} partition key {key!r}: {problem}")


def valid_partition_key(partition: str, key: str) -> bool:
    """Whether ``key`` follows the rule of ``partition`` (:data:`PARTITION_KEY_RULES`)."""
    return PARTITION_KEY_RULES.get(partition, valid_key)(key)


def check_partition_key(partition: str, key: str) -> str:
    """``key``, if it follows the rule of ``partition``; else :class:`PartitionKeyError`."""
    if not valid_partition_key(partition, key):
        raise PartitionKeyError(
            partition,
            key,
            "not usable as a file name (letters, digits and '_', '.', '+', '-', starting with "
            "a letter or digit, no '..', no path separator); nothing was written. Remove it "
            "from the instance (Partitions tab, or instance.delete_dynamic_partition)",
        )
    return key


def valid_split(key: str) -> bool:
    """``all`` or ``split_<seed>`` (a non-negative integer seed without leading zeros)."""
    return isinstance(key, str) and bool(SPLIT_KEY.match(key))


def split_seed(key: str) -> int | None:
    """The hash seed of a ``split_<seed>`` key; ``None`` for ``all``.

    Raises
    ------
    ValueError
        For a key that is neither.
    """
    if not valid_split(key):
        raise ValueError(
            f"split partition {key!r} is not a split: use {ALL_SPLIT!r} (every perturbagen "
            f"trained) or '{SPLIT_PREFIX}<seed>' (e.g. split_0, split_1: 20% held out by seed)"
        )
    return None if key == ALL_SPLIT else int(key[len(SPLIT_PREFIX) :])


def served_split() -> str:
    """The split whose model read-across, the embeddings and the catalog use:
    ``$L1000_SERVED_SPLIT`` when set, else ``all``."""
    key = os.environ.get(SERVED_SPLIT_ENV, "").strip() or ALL_SPLIT
    split_seed(key)  # refuses a malformed key when the definitions load
    return key


PARTITION_KEY_RULES[split_partitions.name] = valid_split


def served_model_mapping() -> dg.SpecificPartitionsPartitionMapping:
    """A dependency on the served ``embedding_model`` partition only (:func:`served_split`)."""
    return dg.SpecificPartitionsPartitionMapping([served_split()])


def missing_partitions(
    instance: dg.DagsterInstance, partitions: dg.DynamicPartitionsDefinition, keys
) -> list[str]:
    """The valid keys among ``keys`` that ``partitions`` does not have yet, in order."""
    existing = set(instance.get_dynamic_partitions(partitions.name))
    return [
        k
        for k in dict.fromkeys(keys)
        if valid_partition_key(partitions.name, k) and k not in existing
    ]
