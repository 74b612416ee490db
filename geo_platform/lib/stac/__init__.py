"""Plain STAC logic (no Dagster): ids, items, collections, offline validation."""
