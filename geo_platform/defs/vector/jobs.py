import dagster as dg

# A vector file's tables and their STAC items; tiles follow as their own materialization.
VECTOR_INGEST_ASSETS = [dg.AssetKey("vector_table"), dg.AssetKey("vector_item")]

vector_ingest_job = dg.define_asset_job(
    "vector_ingest",
    selection=dg.AssetSelection.assets(*VECTOR_INGEST_ASSETS),
    description="Load a bronze vector file into warehouse tables and upsert their STAC items.",
)
vector_tiles_job = dg.define_asset_job(
    "vector_tiles_job",
    selection=dg.AssetSelection.assets(dg.AssetKey("vector_tiles")),
    description="Make the PMTiles archives of a vector file's tables.",
)
