"""Dynamic partitions.

``cell_line`` keys come from the releases' own metadata (``release_metadata`` adds them);
``release`` keys from ``synthetic_release`` for the embedded release, otherwise from the
partition picker in the UI (a release sensor is planned to add them automatically).
"""

import re

import dagster as dg

release_partitions = dg.DynamicPartitionsDefinition(name="release")
cell_line_partitions = dg.DynamicPartitionsDefinition(name="cell_line")

# Real cell line names contain '-' and '.', e.g. SK-N-SH, NCI-H716; nothing that could
# escape a directory or break a Parquet hive path.
CELL_LINE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}$")


def valid_cell_line(key: str) -> bool:
    return bool(CELL_LINE_KEY.match(key)) and ".." not in key
