import dagster as dg
from pydantic import Field

from geo_platform.defs.raster.assets import RASTER_ASSETS
from geo_platform.defs.raster.partitions import RASTER_PARTITIONS
from geo_platform.processing.raster import remove_raster
from geo_platform.resources.blob_store import BRONZE, BlobStore
from geo_platform.resources.stac_catalog import StacCatalog

# Validation, tiers and item of a range of rasters; runs narrow the tiers to the output_tier.
raster_ingest_job = dg.define_asset_job(
    "raster_ingest",
    selection=dg.AssetSelection.assets(*RASTER_ASSETS),
    description="Validate bronze rasters, write their COG tiers and upsert their STAC items.",
)


class RemoveRastersConfig(dg.Config):
    keys: list[str] = Field(description="Blob keys (partitions) deleted from bronze.")


@dg.op
def remove_rasters(
    context: dg.OpExecutionContext,
    config: RemoveRastersConfig,
    blob_store: BlobStore,
    stac_catalog: dg.ResourceParam[StacCatalog],
) -> None:
    """Removes the tiers, the STAC item and the partition of rasters whose bronze blob was
    deleted; a blob that is back meanwhile keeps everything."""
    removed = []
    for key in config.keys:
        if remove_raster(key, blob_store, stac_catalog):
            context.instance.delete_dynamic_partition(RASTER_PARTITIONS, key)
            removed.append(key)
            context.log.info(f"{BRONZE}/{key} was deleted: its tiers, item and partition are gone")
        else:
            context.log.info(f"{BRONZE}/{key} is back in bronze: kept")
    context.log.info(f"removed {len(removed)} of {len(config.keys)} rasters")


@dg.job(description="Remove what the platform made of rasters deleted from bronze.")
def raster_cleanup() -> None:
    remove_rasters()
