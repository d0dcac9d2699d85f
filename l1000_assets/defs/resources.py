"""The one place that registers the resources every stage is injected with."""

import dagster as dg

from l1000_assets.lib.releases import registry_from_env, watch_from_env
from l1000_assets.lib.resources import lake_from_env


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "lake": lake_from_env(),
            "releases": registry_from_env(),
            "release_watch": watch_from_env(),
        }
    )
