"""A collection's vector options: the platform's defaults, then its ``vector:`` section in
the collections file::

    parcels:
      vector:
        target_crs: EPSG:2056   # reproject to this (default EPSG:4326)
        source_crs: EPSG:2056   # for sources that carry no CRS
        keep_z: true
        keep_m: false
        min_zoom: 0             # vector tiles
        max_zoom: 14
"""

from __future__ import annotations

from typing import Any

import pyproj

from geo_platform.errors import ConfigurationError
from geo_platform.lib.vector.archive import ZipLimits
from geo_platform.lib.vector.geometry import GeometryPolicy
from geo_platform.lib.vector.load import VectorOptions
from geo_platform.lib.vector.tiles import TileOptions
from geo_platform.settings import VectorSettings

_KEYS = {"target_crs", "source_crs", "keep_z", "keep_m", "min_zoom", "max_zoom"}


def collection_vector_section(collection: str, config: dict[str, dict]) -> dict[str, Any]:
    section = (config.get(collection) or {}).get("vector") or {}
    if not isinstance(section, dict):
        raise ConfigurationError(f"collection {collection!r}: 'vector' must be a mapping")
    unknown = set(section) - _KEYS
    if unknown:
        raise ConfigurationError(
            f"collection {collection!r}: unknown vector settings {sorted(unknown)} "
            f"(known: {sorted(_KEYS)})"
        )
    return section


def vector_options(
    collection: str, settings: VectorSettings, config: dict[str, dict]
) -> tuple[VectorOptions, TileOptions]:
    section = collection_vector_section(collection, config)
    for key in ("target_crs", "source_crs"):
        if section.get(key) is not None:
            try:
                pyproj.CRS.from_user_input(section[key])
            except pyproj.exceptions.CRSError:
                raise ConfigurationError(
                    f"collection {collection!r}: {key} {section[key]!r} is not a CRS PROJ knows"
                ) from None
    try:
        policy = GeometryPolicy(
            target_crs=str(section.get("target_crs", settings.target_crs)),
            keep_z=bool(section.get("keep_z", settings.keep_z)),
            keep_m=bool(section.get("keep_m", settings.keep_m)),
        )
        policy.srid()
        tiles = TileOptions(
            min_zoom=int(section.get("min_zoom", settings.tiles_min_zoom)),
            max_zoom=int(section.get("max_zoom", settings.tiles_max_zoom)),
        )
    except (ValueError, TypeError) as e:
        raise ConfigurationError(f"collection {collection!r}: {e}") from None
    options = VectorOptions(
        policy=policy,
        batch_size=settings.batch_size,
        source_crs=section.get("source_crs"),
        zip_limits=ZipLimits(
            max_total_bytes=settings.max_unzipped_bytes, max_ratio=settings.max_zip_ratio
        ),
    )
    return options, tiles
