import dagster as dg

from geo_platform.defs.raster.assets import TIER_ASSETS

INGEST_ASSETS = [dg.AssetKey("raster_validation"), *TIER_ASSETS.values(), dg.AssetKey("stac_item")]

# Validation, tiers and item of one raster; runs narrow the tiers to the output_tier.
raster_ingest_job = dg.define_asset_job(
    "raster_ingest",
    selection=dg.AssetSelection.assets(*INGEST_ASSETS),
    description="Validate a bronze raster, write its COG tiers and upsert its STAC item.",
)
