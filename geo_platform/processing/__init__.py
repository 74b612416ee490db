"""What the platform does to a blob, in plain Python over its backends (no Dagster).

``lib`` holds functions that know nothing of storage or catalogs; ``processing`` puts
them together over the ``BlobStore`` and ``StacCatalog`` interfaces, one blob or a
batch at a time; ``defs`` reports what it returns to Dagster.
"""
