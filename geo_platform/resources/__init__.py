"""Backends as Dagster resources, one small interface each, chosen once from settings."""

from __future__ import annotations

from typing import Any

from geo_platform.settings import PlatformSettings, Profile, get_platform_settings


def build_resources(settings: PlatformSettings | None = None) -> dict[str, Any]:
    """The resources of the active profile, keyed as the assets ask for them."""
    from geo_platform.resources.blob_store import LocalBlobStore
    from geo_platform.resources.cog_tier_io_manager import CogTierIOManager
    from geo_platform.resources.stac_catalog import DuckDBCatalog

    settings = settings or get_platform_settings()
    if settings.profile is Profile.PRODUCTION:
        raise NotImplementedError(
            "the production profile (PostgreSQL, pgSTAC, Azure Blob Storage) is not built yet; "
            "unset GEO_PLATFORM_PROFILE to use the embedded profile"
        )
    blob_store = LocalBlobStore(root=str(settings.blob_root))
    return {
        "blob_store": blob_store,
        "stac_catalog": DuckDBCatalog(path=str(settings.catalog_path)),
        "cog_tier_io_manager": CogTierIOManager(blob_store=blob_store),
    }
