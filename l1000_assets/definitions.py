"""The code location: every asset, check, sensor and schedule under ``defs/``, with the
release automation conditions attached (see ``defs/automation/conditions.py``), and owners,
code references and catalog table names for the UI (``lib/ui.py``)."""

import warnings
from pathlib import Path

import dagster as dg

from l1000_assets.defs.automation.conditions import with_automation
from l1000_assets.lib.ui import describe, with_code_references

_PREVIEW_APIS = r"Function `Definitions\.(map_asset_specs|map_resolved_asset_specs)` "
_BETA_APIS = (
    r"(Function|Class) `(with_source_code_references|link_code_references_to_git"
    r"|LocalFileCodeReference|UrlCodeReference|CodeReferencesMetadataValue"
    r"|AnchorBasedFilePathMapping)` "
)


@dg.definitions
def defs() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    with warnings.catch_warnings():
        # Only the APIs used here: map_asset_specs is in preview, the code references in beta
        # (any other preview or beta warning still shows).
        warnings.filterwarnings("ignore", message=_PREVIEW_APIS, category=dg.PreviewWarning)
        warnings.filterwarnings("ignore", message=_BETA_APIS, category=dg.BetaWarning)
        loaded = with_automation(loaded).map_asset_specs(func=describe)
        fields = {name: getattr(loaded, name) for name in dg.Definitions._fields}
        return dg.Definitions(**{**fields, "assets": with_code_references(loaded.assets or [])})
