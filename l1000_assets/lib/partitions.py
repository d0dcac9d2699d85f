"""Dynamic partitions.

Keys are never typed by hand: ``release`` keys are added by ``release_sensor`` when it finds a
new release source (and by ``synthetic_release`` for the embedded release); ``cell_line`` keys by
``release_metadata`` from the cell ids in each release's own metadata. Both are validated first.
"""

import re

import dagster as dg

from l1000_assets.core.releases.registry import RELEASE_NAME

release_partitions = dg.DynamicPartitionsDefinition(name="release")
cell_line_partitions = dg.DynamicPartitionsDefinition(name="cell_line")

# Real cell line names contain '-' and '.', e.g. SK-N-SH, NCI-H716; nothing that could
# escape a directory or break a Parquet hive path.
CELL_LINE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}$")


def valid_cell_line(key: str) -> bool:
    return bool(CELL_LINE_KEY.match(key)) and ".." not in key


def valid_release(key: str) -> bool:
    """A release name usable as a partition key and directory name (``RELEASE_NAME``)."""
    return bool(RELEASE_NAME.match(key)) and ".." not in key


def missing_partitions(
    instance: dg.DagsterInstance, partitions: dg.DynamicPartitionsDefinition, keys
) -> list[str]:
    """The valid keys among ``keys`` that ``partitions`` does not have yet, in order."""
    check = valid_release if partitions.name == release_partitions.name else valid_cell_line
    existing = set(instance.get_dynamic_partitions(partitions.name))
    return [k for k in dict.fromkeys(keys) if check(k) and k not in existing]
