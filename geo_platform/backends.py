"""The active profile's backends as plain objects, for the command line.

Nothing here imports Dagster: ``geo-platform stac load`` and ``stac search`` start in
the time their backend's own libraries take (``geo_platform.resources`` builds the
same backends as Dagster resources).
"""

from __future__ import annotations

from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.settings import PlatformSettings, Profile, get_postgres_settings


def stac_catalog(settings: PlatformSettings) -> StacCatalog:
    """The profile's STAC catalog: pgSTAC (production) or the DuckDB file (embedded)."""
    if settings.profile is Profile.PRODUCTION:
        from geo_platform.resources.pgstac_catalog import PgstacCatalog

        return PgstacCatalog(dsn=get_postgres_settings().dsn())
    from geo_platform.resources.duckdb_catalog import DuckDBCatalog

    return DuckDBCatalog(path=str(settings.catalog_path))
