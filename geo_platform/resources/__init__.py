"""Backends as Dagster resources, one small interface each, chosen once from settings.

Dagster is imported only where a resource is built for it: the catalog interface and
its two implementations (``stac_catalog``, ``duckdb_catalog``, ``pgstac_catalog``) are
plain classes, which the ``stac`` commands use without paying for Dagster's import.
"""

from __future__ import annotations

import os
from typing import Any

from geo_platform.settings import (
    PlatformSettings,
    Profile,
    get_azure_settings,
    get_platform_settings,
    get_postgres_settings,
)

# Secrets reach resources as environment variables (dg.EnvVar), so that the Dagster
# UI, which shows resource config, never shows them. Set from the settings here.
PGSTAC_DSN_ENV = "GEO_PLATFORM_PGSTAC_DSN"
AZURE_CONNECTION_STRING_ENV = "GEO_PLATFORM_AZURE_CONNECTION_STRING"


def build_resources(
    settings: PlatformSettings | None = None, *, for_dagster: bool = False
) -> dict[str, Any]:
    """The resources of the active profile, keyed as the assets ask for them.

    ``for_dagster`` passes secrets as ``dg.EnvVar`` (resolved by Dagster when a run
    starts); without it the resources hold the values and work outside Dagster too.
    """
    from geo_platform.resources.cog_tier_io_manager import CogTierIOManager

    settings = settings or get_platform_settings()
    if settings.profile is Profile.PRODUCTION:
        blob_store, catalog = _production_backends(for_dagster)
    else:
        from geo_platform.resources.blob_store import LocalBlobStore
        from geo_platform.resources.stac_catalog_resources import DuckDBCatalogResource

        blob_store = LocalBlobStore(root=str(settings.blob_root))
        catalog = DuckDBCatalogResource(path=str(settings.catalog_path))
    return {
        "blob_store": blob_store,
        "stac_catalog": catalog,
        "cog_tier_io_manager": CogTierIOManager(blob_store=blob_store),
    }


def _production_backends(for_dagster: bool) -> tuple[Any, Any]:
    from geo_platform.resources.azure_blob_store import AzureBlobStore
    from geo_platform.resources.stac_catalog_resources import PgstacCatalogResource

    dsn = get_postgres_settings().dsn()
    azure = get_azure_settings()
    connection_string = azure.connection_string.get_secret_value()
    prefix = azure.container_prefix
    if not for_dagster:
        return (
            AzureBlobStore(connection_string=connection_string, container_prefix=prefix),
            PgstacCatalogResource(dsn=dsn),
        )
    import dagster as dg

    # Run workers are child processes: they inherit these and Dagster resolves them.
    os.environ[PGSTAC_DSN_ENV] = dsn
    os.environ[AZURE_CONNECTION_STRING_ENV] = connection_string
    return (
        AzureBlobStore(
            connection_string=dg.EnvVar(AZURE_CONNECTION_STRING_ENV), container_prefix=prefix
        ),
        PgstacCatalogResource(dsn=dg.EnvVar(PGSTAC_DSN_ENV)),
    )
