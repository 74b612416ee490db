"""H3 grids and summaries as plain functions: cells, their boundaries as valid lon/lat
geometries, and per-cell statistics of rasters and vector tables (no Dagster here)."""
