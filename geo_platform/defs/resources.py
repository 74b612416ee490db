import dagster as dg

from geo_platform.backends import dagster_resources


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=dagster_resources())
