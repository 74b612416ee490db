import dagster as dg

from geo_platform.defs.raster.assets import RASTER_ASSETS

# Validation, tiers and item of a range of rasters; runs narrow the tiers to the output_tier.
raster_ingest_job = dg.define_asset_job(
    "raster_ingest",
    selection=dg.AssetSelection.assets(*RASTER_ASSETS),
    description="Validate bronze rasters, write their COG tiers and upsert their STAC items.",
)
