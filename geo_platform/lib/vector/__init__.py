"""Vector ETL as plain functions: read in Arrow batches, repair, name, tile. No Dagster here."""
