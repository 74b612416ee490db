"""Backends behind small interfaces: ``BlobStore`` (folders, Azure), ``StacCatalog``
(DuckDB, pgSTAC) and the COG tier IO manager. ``geo_platform.backends`` chooses them."""
