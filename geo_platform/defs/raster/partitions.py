import dagster as dg

# One partition per raster blob in the bronze container, keyed by its blob key.
raster_partitions = dg.DynamicPartitionsDefinition(name="rasters")
