"""geo_platform: a Dagster asset-based geospatial data platform."""
