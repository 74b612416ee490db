-- The warehouse of the production profile: vector tables in schema "vector", and the
-- registry of which blob key and layer each table holds. Idempotent.
CREATE EXTENSION IF NOT EXISTS postgis;
CREATE SCHEMA IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS vector._layers (
    table_name text PRIMARY KEY,
    blob_key text NOT NULL,
    layer text,
    source_sha256 text,
    record jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS _layers_blob_key ON vector._layers (blob_key);
