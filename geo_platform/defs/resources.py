import dagster as dg

from geo_platform.resources import build_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=build_resources(for_dagster=True))
