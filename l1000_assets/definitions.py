"""The code location: every asset, check, sensor and schedule under ``defs/``, with the
release automation conditions attached (see ``defs/automation/conditions.py``), and owners,
code references and catalog table names for the UI (``lib/ui.py``)."""

import warnings
from pathlib import Path

import dagster as dg

from l1000_assets.defs.automation.conditions import with_automation
from l1000_assets.lib.ui import describe, with_code_references


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    with warnings.catch_warnings():
        # map_asset_specs is a preview API, with_source_code_references a beta one.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        warnings.simplefilter("ignore", dg.BetaWarning)
        loaded = with_automation(loaded).map_asset_specs(func=describe)
        fields = {name: getattr(loaded, name) for name in dg.Definitions._fields}
        return dg.Definitions(**{**fields, "assets": with_code_references(loaded.assets or [])})
