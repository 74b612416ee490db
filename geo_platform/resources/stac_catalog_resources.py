"""The STAC catalogs as Dagster resources: configuration shown in the UI, a plain
``StacCatalog`` handed to assets."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from geo_platform.lib.stac.loader import DEFAULT_BATCH_SIZE
from geo_platform.resources.stac_catalog import StacCatalog


class DuckDBCatalogResource(dg.ConfigurableResource):
    """The embedded catalog, a DuckDB file. Assets get a ``DuckDBCatalog``."""

    path: str = Field(description="The catalog's DuckDB file.")
    batch_size: int = DEFAULT_BATCH_SIZE

    def create_resource(self, context: dg.InitResourceContext) -> StacCatalog:
        from geo_platform.resources.duckdb_catalog import DuckDBCatalog

        return DuckDBCatalog(path=self.path, batch_size=self.batch_size)


class PgstacCatalogResource(dg.ConfigurableResource):
    """The production catalog, pgSTAC. Assets get a ``PgstacCatalog``."""

    dsn: str = Field(description="libpq URL with the password: pass it as an EnvVar.")
    batch_size: int = DEFAULT_BATCH_SIZE

    def create_resource(self, context: dg.InitResourceContext) -> StacCatalog:
        from geo_platform.resources.pgstac_catalog import PgstacCatalog

        return PgstacCatalog(dsn=self.dsn, batch_size=self.batch_size)
