import dagster as dg

from geo_platform.defs.h3.assets import (
    build_h3_grid,
    h3_land_grid,
    h3_raster_summary,
    h3_vector_summary,
)
from geo_platform.settings import get_h3_settings


@dg.definitions
def h3_definitions() -> dg.Definitions:
    """The H3 assets; their partitions follow the settings when the definitions load."""
    settings = get_h3_settings()
    return dg.Definitions(
        assets=[
            build_h3_grid(settings.max_resolution),
            h3_land_grid,
            h3_raster_summary,
            h3_vector_summary,
        ]
    )
