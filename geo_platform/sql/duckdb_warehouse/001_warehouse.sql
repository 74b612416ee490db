-- The warehouse of the embedded profile (warehouse.duckdb, not the catalog's file):
-- vector tables in schema "vector", and the registry of which blob key and layer each
-- table holds. Idempotent.
CREATE SCHEMA IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS vector._layers (
    table_name VARCHAR PRIMARY KEY,
    blob_key VARCHAR NOT NULL,
    layer VARCHAR,
    source_sha256 VARCHAR,
    record VARCHAR NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
