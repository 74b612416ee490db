"""Settings, read from the environment (prefix GEO_PLATFORM_) when asked for.

One class per concern. Nothing reads the environment at import time: call the
``get_*`` functions where the value is needed.
"""

from __future__ import annotations

import datetime as dt
import os
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote

from pydantic import Field, SecretStr
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
    # Temporary files of runs (COGs before they are stored); defaults to <data_dir>/scratch.
    scratch_dir: Path | None = None

    @property
    def blob_root(self) -> Path:
        return self.data_dir.resolve() / "blobs"

    @property
    def catalog_path(self) -> Path:
        return self.data_dir.resolve() / "catalog.duckdb"

    @property
    def scratch_path(self) -> Path:
        return (self.scratch_dir or self.data_dir / "scratch").resolve()

    @property
    def warehouse_path(self) -> Path:
        """The embedded profile's warehouse (vector and H3 tables), apart from the catalog."""
        return self.data_dir.resolve() / "warehouse.duckdb"

    @property
    def collections_path(self) -> Path:
        return (self.collections_file or self.data_dir / "collections.yaml").resolve()

    @property
    def dagster_home(self) -> Path:
        env = os.environ.get("DAGSTER_HOME")
        if env:
            return Path(env).resolve()
        # One instance per profile: their dagster.yaml files differ.
        suffix = "" if self.profile is Profile.EMBEDDED else f"_{self.profile.value}"
        return self.data_dir.resolve() / f"dagster_home{suffix}"


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


class RunSettings(BaseSettings):
    """How a run shares out its partitions."""

    model_config = SettingsConfigDict(env_prefix="GEO_PLATFORM_RUN_")

    # Blobs processed at once inside a run; GDAL's threads share the cores among them.
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, gt=0)
    # Partitions per run, for `geo-platform ingest`, the sensor and backfills: a run
    # costs ~1 s of bookkeeping in process (start, planned events, its worker processes,
    # its last item batch) and seconds more as a run of its own, a small raster inside
    # one ~50 ms: 1,000 small rasters took 59 s in runs of 100, 55 s in runs of 250.
    batch_size: int = Field(default=250, gt=0)
    # Items per catalog transaction inside a run.
    item_batch_size: int = Field(default=200, gt=0)
    # The sensor and the nightly reconciliation leave a blob younger than this alone: it
    # may be an upload whose `geo-platform ingest` has not recorded it yet.
    sensor_settle_seconds: float = Field(default=60, ge=0)

    @property
    def settle(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.sensor_settle_seconds)


class LimitSettings(BaseSettings):
    """Bounds that protect workers from hostile or accidental inputs."""

    model_config = SettingsConfigDict(env_prefix="GEO_PLATFORM_LIMIT_")

    # 2 gigapixels: a header can claim 10^12 pixels in a few bytes.
    max_pixels: int = Field(default=2_000_000_000, gt=0)
    # Width x height x bands x bytes per sample: a sparse or compressed file decodes to
    # this much, and its tiers are written through an uncompressed copy of ~1.4 times it
    # on scratch disk. 8 GiB lets through every 8-bit RGB(A) and single-band 32-bit
    # raster within the pixel limit.
    max_decoded_bytes: int = Field(default=8 * 1024**3, gt=0)
    max_file_bytes: int = Field(default=20 * 1024**3, gt=0)
    max_bands: int = Field(default=64, gt=0)


class TilingSettings(BaseSettings):
    """When a raster is cut into tiles, and how big they are (``lib.raster.tiling``)."""

    model_config = SettingsConfigDict(env_prefix="GEO_PLATFORM_TILING_")

    # Rasters with more pixels than this are tiled: 16,384^2 (268 M pixels, 1 GB of
    # 4-byte pixels per band) is about what one raster worker handles whole.
    threshold_pixels: int = Field(default=16_384 * 16_384, gt=0)
    # Tile side in pixels; a multiple of the COG block size (512) so that tiles share
    # the source's block grid. 8,192^2 tiles: 25 tiles for a 40,000^2 raster.
    tile_size: int = Field(default=8_192, ge=512, multiple_of=512)
    # GDAL's block cache (MB) while a raster is tiled or reprojected: its default (5% of
    # the machine's memory) would let one big raster fill a worker.
    gdal_cachemax_mb: int = Field(default=256, ge=16)


def get_tiling_settings() -> TilingSettings:
    return TilingSettings()


class VectorSettings(BaseSettings):
    """Defaults of vector loading; a collection can override the geometry ones
    (``vector:`` in the collections file)."""

    model_config = SettingsConfigDict(env_prefix="GEO_PLATFORM_VECTOR_")

    batch_size: int = Field(default=16_384, gt=0)
    target_crs: str = "EPSG:4326"
    keep_z: bool = True
    keep_m: bool = True
    tiles_min_zoom: int = Field(default=0, ge=0, le=22)
    tiles_max_zoom: int = Field(default=10, ge=0, le=22)
    # Zip bombs: the shapefiles of one archive may expand to this much, and no entry
    # over 8 MB may expand more than max_zip_ratio times.
    max_unzipped_bytes: int = Field(default=20 * 1024**3, gt=0)
    max_zip_ratio: float = Field(default=500.0, gt=1)


class H3Settings(BaseSettings):
    """The H3 grids and summaries (``h3_grid``, ``h3_land_grid``, ``h3_*_summary``)."""

    model_config = SettingsConfigDict(env_prefix="GEO_PLATFORM_H3_")

    # Partitions of h3_grid: resolutions 0 to this; 5 and 6 fan out per resolution-0 cell.
    max_resolution: int = Field(default=4, ge=0, le=6)
    # Processes making the cells of an h3_grid run (0: one per CPU), and the most cells
    # one makes (and a partition's load holds) at a time.
    workers: int = Field(default=0, ge=0)
    batch_cells: int = Field(default=50_000, ge=1_000)
    # The polygons that count as land: a warehouse table as schema.table (by default the
    # Natural Earth countries ingested as naturalearth/countries.zip).
    land_table: str = "vector.naturalearth__countries_zip__naturalearth_lowres"
    land_resolution: int = Field(default=4, ge=0, le=6)
    # Cells of the raster and vector summaries.
    summary_resolution: int = Field(default=5, ge=0, le=10)
    # Raster collections (first blob-key segment) summarised; empty: every collection
    # with analysis tiers.
    raster_collections: list[str] = Field(default_factory=list)
    # Vector tables (in schema vector) summarised; empty: every loaded table.
    vector_tables: list[str] = Field(default_factory=list)
    # Pixels per side of the windows a raster is read in.
    window_size: int = Field(default=1024, ge=64)


AZURITE_CONNECTION_STRING = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    # Azurite's published development key: not a secret.
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)


class PostgresSettings(BaseSettings):
    """PostgreSQL of the production profile; defaults are what `make services` starts."""

    model_config = SettingsConfigDict(env_prefix="GEO_PLATFORM_PG_")

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "geo_platform"
    password: SecretStr = SecretStr("geo_platform")
    # PostGIS tables and the pgSTAC schema.
    database: str = "geo_platform"
    # The Dagster instance (runs, events, schedules).
    dagster_database: str = "dagster"

    def dsn(self, database: str | None = None) -> str:
        """A libpq URL, password included: never log it."""
        user = quote(self.user, safe="")
        password = quote(self.password.get_secret_value(), safe="")
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{database or self.database}"

    def redacted_dsn(self, database: str | None = None) -> str:
        return f"postgresql://{self.user}:***@{self.host}:{self.port}/{database or self.database}"


class AzureSettings(BaseSettings):
    """Azure Blob Storage of the production profile; defaults to the local Azurite."""

    model_config = SettingsConfigDict(env_prefix="GEO_PLATFORM_AZURE_")

    connection_string: SecretStr = SecretStr(AZURITE_CONNECTION_STRING)
    # Prepended to every container name: deployments (or test runs) can share an account.
    container_prefix: str = ""
    # How long `stac search --sign` hrefs work.
    sas_lifetime_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)


def get_postgres_settings() -> PostgresSettings:
    return PostgresSettings()


def get_azure_settings() -> AzureSettings:
    return AzureSettings()


def get_platform_settings() -> PlatformSettings:
    return PlatformSettings()


def get_price_settings() -> PriceSettings:
    return PriceSettings()


def get_limit_settings() -> LimitSettings:
    return LimitSettings()


def get_run_settings() -> RunSettings:
    return RunSettings()


def get_vector_settings() -> VectorSettings:
    return VectorSettings()


def get_h3_settings() -> H3Settings:
    return H3Settings()
