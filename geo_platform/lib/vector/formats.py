"""Which blob keys are vector files, and what each kind holds."""

from __future__ import annotations

from enum import StrEnum


class VectorFormat(StrEnum):
    GEOJSON = "geojson"  # a FeatureCollection or newline-delimited features
    SHAPEFILE_ZIP = "shapefile_zip"  # one or more shapefiles in a .zip
    GEOPACKAGE = "geopackage"  # every layer becomes a table
    GEOPARQUET = "geoparquet"
    FLATGEOBUF = "flatgeobuf"


# Longest first: ``.shp.zip`` is matched before ``.zip``.
_SUFFIX_FORMATS: tuple[tuple[str, VectorFormat], ...] = (
    (".shp.zip", VectorFormat.SHAPEFILE_ZIP),
    (".geojsonl", VectorFormat.GEOJSON),
    (".geojsons", VectorFormat.GEOJSON),
    (".geojson", VectorFormat.GEOJSON),
    (".geoparquet", VectorFormat.GEOPARQUET),
    (".parquet", VectorFormat.GEOPARQUET),
    (".gpkg", VectorFormat.GEOPACKAGE),
    (".fgb", VectorFormat.FLATGEOBUF),
    (".zip", VectorFormat.SHAPEFILE_ZIP),
)
VECTOR_SUFFIXES = tuple(suffix for suffix, _ in _SUFFIX_FORMATS)
# Formats whose file holds several layers: each table name carries its layer.
MULTI_LAYER = frozenset({VectorFormat.GEOPACKAGE, VectorFormat.SHAPEFILE_ZIP})


def vector_suffix(key: str) -> str | None:
    """The vector suffix ``key`` ends with, as written in the key, or None."""
    name = key.rsplit("/", 1)[-1]
    if name.startswith("."):
        return None
    lower = name.lower()
    for suffix, _ in _SUFFIX_FORMATS:
        if lower.endswith(suffix) and len(lower) > len(suffix):
            return name[-len(suffix) :]
    return None


def vector_format(key: str) -> VectorFormat | None:
    suffix = vector_suffix(key)
    if suffix is None:
        return None
    return dict(_SUFFIX_FORMATS)[suffix.lower()]


def is_vector_key(key: str) -> bool:
    return vector_suffix(key) is not None
