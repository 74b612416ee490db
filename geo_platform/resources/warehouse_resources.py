"""The warehouses as Dagster resources: configuration shown in the UI, a plain
``Warehouse`` handed to assets."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from geo_platform.resources.warehouse import Warehouse


class DuckDBWarehouseResource(dg.ConfigurableResource):
    """The embedded warehouse, a DuckDB file. Assets get a ``DuckDBWarehouse``."""

    path: str = Field(description="The warehouse's DuckDB file.")

    def create_resource(self, context: dg.InitResourceContext) -> Warehouse:
        from geo_platform.resources.duckdb_warehouse import DuckDBWarehouse

        return DuckDBWarehouse(path=self.path)


class PostgisWarehouseResource(dg.ConfigurableResource):
    """The production warehouse, PostGIS. Assets get a ``PostgisWarehouse``."""

    dsn: str = Field(description="libpq URL with the password: pass it as an EnvVar.")

    def create_resource(self, context: dg.InitResourceContext) -> Warehouse:
        from geo_platform.resources.postgis_warehouse import PostgisWarehouse

        return PostgisWarehouse(dsn=self.dsn)
