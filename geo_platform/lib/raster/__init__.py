"""Plain raster logic (no Dagster): validation, COG tiers, thumbnails, comparisons."""
