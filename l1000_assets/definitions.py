"""The code location: every asset, check, sensor and schedule under ``defs/``, with the
release automation conditions attached (see ``defs/automation/conditions.py``)."""

import warnings
from pathlib import Path

import dagster as dg

from l1000_assets.defs.automation.conditions import with_automation


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # map_asset_specs is a preview API
        return with_automation(loaded)
