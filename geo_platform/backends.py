"""The one place that chooses the active profile's backends.

``embedded``: blobs in folders, the catalog and the warehouse in DuckDB files.
``production``: Azure Blob Storage, pgSTAC and PostGIS. The command line gets plain
objects (``stac_catalog`` imports no Dagster, so ``geo-platform stac ...`` starts in the
time its backend's libraries take); Dagster gets the same backends as resources
(``dagster_resources``), with secrets passed as ``dg.EnvVar`` so that the UI, which shows
resource config, never shows them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from geo_platform.settings import (
    PlatformSettings,
    Profile,
    get_azure_settings,
    get_platform_settings,
    get_postgres_settings,
)

if TYPE_CHECKING:
    from geo_platform.resources.blob_store import BlobStore
    from geo_platform.resources.stac_catalog import StacCatalog
    from geo_platform.resources.warehouse import Warehouse

# Run workers are child processes: they inherit these and Dagster resolves them.
PGSTAC_DSN_ENV = "GEO_PLATFORM_PGSTAC_DSN"
AZURE_CONNECTION_STRING_ENV = "GEO_PLATFORM_AZURE_CONNECTION_STRING"


def _production(settings: PlatformSettings) -> bool:
    return settings.profile is Profile.PRODUCTION


def stac_catalog(settings: PlatformSettings) -> StacCatalog:
    """The profile's STAC catalog: pgSTAC (production) or the DuckDB file (embedded)."""
    if _production(settings):
        from geo_platform.resources.pgstac_catalog import PgstacCatalog

        return PgstacCatalog(dsn=get_postgres_settings().dsn())
    from geo_platform.resources.duckdb_catalog import DuckDBCatalog

    return DuckDBCatalog(path=str(settings.catalog_path))


def warehouse(settings: PlatformSettings) -> Warehouse:
    """The profile's warehouse of vector and H3 tables: PostGIS (production) or
    ``warehouse.duckdb`` (embedded)."""
    if _production(settings):
        from geo_platform.resources.postgis_warehouse import PostgisWarehouse

        return PostgisWarehouse(dsn=get_postgres_settings().dsn())
    from geo_platform.resources.duckdb_warehouse import DuckDBWarehouse

    return DuckDBWarehouse(path=str(settings.warehouse_path))


def blob_store(settings: PlatformSettings, *, secrets_from_env: bool = False) -> BlobStore:
    """The profile's blob storage: Azure (production) or folders (embedded).

    ``secrets_from_env``: the connection string as a ``dg.EnvVar``, resolved by Dagster
    when a run starts, for resources that Dagster shows.
    """
    if _production(settings):
        from geo_platform.resources.azure_blob_store import AzureBlobStore

        azure = get_azure_settings()
        connection_string: Any = azure.connection_string.get_secret_value()
        if secrets_from_env:
            import dagster as dg

            os.environ[AZURE_CONNECTION_STRING_ENV] = connection_string
            connection_string = dg.EnvVar(AZURE_CONNECTION_STRING_ENV)
        return AzureBlobStore(
            connection_string=connection_string, container_prefix=azure.container_prefix
        )
    from geo_platform.resources.blob_store import LocalBlobStore

    return LocalBlobStore(root=str(settings.blob_root))


def dagster_resources(
    settings: PlatformSettings | None = None, *, warehouse: bool = True
) -> dict[str, Any]:
    """The profile's backends as Dagster resources, keyed as the assets ask for them;
    ``warehouse=False`` leaves out the warehouse (and its imports, pyarrow's among them:
    ~0.1 s of every raster ingest, which does not use it)."""
    import dagster as dg

    from geo_platform.resources.stac_catalog_resources import (
        DuckDBCatalogResource,
        PgstacCatalogResource,
    )

    settings = settings or get_platform_settings()
    store = blob_store(settings, secrets_from_env=True)
    catalog: dg.ConfigurableResource
    if _production(settings):
        os.environ[PGSTAC_DSN_ENV] = get_postgres_settings().dsn()
        catalog = PgstacCatalogResource(dsn=dg.EnvVar(PGSTAC_DSN_ENV))
    else:
        catalog = DuckDBCatalogResource(path=str(settings.catalog_path))
    resources: dict[str, Any] = {"blob_store": store, "stac_catalog": catalog}
    if warehouse:
        resources["warehouse"] = _warehouse_resource(settings)
    return resources


def _warehouse_resource(settings: PlatformSettings) -> Any:
    import dagster as dg

    from geo_platform.resources.warehouse_resources import (
        DuckDBWarehouseResource,
        PostgisWarehouseResource,
    )

    if _production(settings):
        # The same database holds pgSTAC and the PostGIS tables.
        return PostgisWarehouseResource(dsn=dg.EnvVar(PGSTAC_DSN_ENV))
    return DuckDBWarehouseResource(path=str(settings.warehouse_path))
