"""Settings, read from the environment (prefix GEO_PLATFORM_) when asked for.

One class per concern. Nothing reads the environment at import time: call the
``get_*`` functions where the value is needed.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Profile(StrEnum):
    EMBEDDED = "embedded"
    PRODUCTION = "production"


class PlatformSettings(BaseSettings):
    """Which backends to use and where the embedded profile keeps its files."""

    model_config = SettingsConfigDict(env_prefix="GEO_PLATFORM_")

    profile: Profile = Profile.EMBEDDED
    # Holds the blob folders, the DuckDB files and (unless DAGSTER_HOME is set)
    # the Dagster instance of the embedded profile.
    data_dir: Path = Path(".geo_platform")
    # Per-collection settings such as output_tier; defaults to <data_dir>/collections.yaml.
    collections_file: Path | None = None

    @property
    def blob_root(self) -> Path:
        return self.data_dir.resolve() / "blobs"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir.resolve() / "catalog.duckdb"

    @property
    def collections_path(self) -> Path:
        return (self.collections_file or self.data_dir / "collections.yaml").resolve()

    @property
    def dagster_home(self) -> Path:
        env = os.environ.get("DAGSTER_HOME")
        return Path(env).resolve() if env else self.data_dir.resolve() / "dagster_home"


class PriceSettings(BaseSettings):
    """Storage price per GB-month for each storage class (defaults: Azure LRS list prices)."""

    model_config = SettingsConfigDict(env_prefix="GEO_PLATFORM_PRICE_")

    hot_per_gb_month: float = 0.0184
    cool_per_gb_month: float = 0.01
    currency: str = "USD"

    def per_gb_month(self, storage_class: str) -> float:
        return {"hot": self.hot_per_gb_month, "cool": self.cool_per_gb_month}[storage_class]

    def monthly_cost(self, size_bytes: int, storage_class: str) -> float:
        return size_bytes / 1e9 * self.per_gb_month(storage_class)


class LimitSettings(BaseSettings):
    """Bounds that protect workers from hostile or accidental inputs."""

    model_config = SettingsConfigDict(env_prefix="GEO_PLATFORM_LIMIT_")

    # 2 gigapixels: a header can claim 10^12 pixels in a few bytes.
    max_pixels: int = Field(default=2_000_000_000, gt=0)
    max_file_bytes: int = Field(default=20 * 1024**3, gt=0)
    max_bands: int = Field(default=64, gt=0)


def get_platform_settings() -> PlatformSettings:
    return PlatformSettings()


def get_price_settings() -> PriceSettings:
    return PriceSettings()


def get_limit_settings() -> LimitSettings:
    return LimitSettings()
