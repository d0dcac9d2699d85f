import dagster as dg

from l1000_assets.lib.resources import lake_from_env


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"lake": lake_from_env()})
