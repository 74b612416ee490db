import dagster as dg

# One partition per raster blob in the bronze container, keyed by its blob key.
RASTER_PARTITIONS = "rasters"
raster_partitions = dg.DynamicPartitionsDefinition(name=RASTER_PARTITIONS)
