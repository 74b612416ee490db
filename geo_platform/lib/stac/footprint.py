"""Where a raster has data, in longitude/latitude, the way GeoJSON and STAC want it.

The footprint is the outline of the valid-data mask (read at a reduced size), densified
in the raster's own CRS so that reprojected edges follow the curves they become, and
projected point by point (points off the globe, at the limb of a geostationary disk,
are dropped). The ``antimeridian`` package then splits what crosses 180° into a
MultiPolygon (RFC 7946 §3.1.9) and gives the bbox, whose west exceeds its east when it
crosses. Search boxes and collection extents follow the same convention.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import antimeridian
import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.features import shapes
from shapely.geometry import MultiPolygon, Polygon, mapping, shape

# The mask is read at most this many pixels on its long side: enough for a footprint,
# cheap from a COG's overviews.
MASK_SIZE = 512
# Vertices per edge of the reduced mask grid after densifying (before projection).
_DENSIFY_PIXELS = 4
_PRECISION = 7


class FootprintError(ValueError):
    """The raster has no valid pixel, or none of its outline projects to lon/lat."""


def raster_footprint(src: rasterio.DatasetReader) -> dict[str, Any]:
    """``{"geometry": GeoJSON, "bbox": [w, s, e, n]}`` of the valid data, in EPSG:4326."""
    outline, pixel = _valid_outline(src)
    outline = outline.simplify(pixel / 2).segmentize(pixel * _DENSIFY_PIXELS)
    parts = [_to_lonlat(polygon, src.crs) for polygon in _polygons(outline)]
    parts = [part for part in parts if part is not None]
    if not parts:
        raise FootprintError("the raster's outline does not project to longitude/latitude")
    with warnings.catch_warnings():
        # Rings are oriented here; the package would only say it re-oriented them.
        warnings.simplefilter("ignore", antimeridian.FixWindingWarning)
        fixed = [antimeridian.fix_polygon(part) if _near_180(part) else part for part in parts]
    geometry = _valid(shapely.union_all(fixed))
    # Densified edges that stayed straight (a lon/lat raster, short UTM edges) need not
    # keep their points: drop what lies within a quarter of a mask pixel of the outline.
    west, south, east, north = geometry.bounds
    geometry = _valid(geometry.simplify(max(east - west, north - south) / (MASK_SIZE * 4)))
    geometry = shapely.set_precision(geometry, 10**-_PRECISION)
    geometry = _valid(geometry)
    if geometry.is_empty:
        raise FootprintError("the raster's valid-data outline is empty in longitude/latitude")
    bbox = [round(v, _PRECISION) for v in antimeridian.bbox(geometry)]
    return {"geometry": mapping(geometry), "bbox": bbox}


def _near_180(polygon: Polygon) -> bool:
    """Whether the antimeridian fix could change ``polygon``: a ring that crosses 180°
    or winds round a pole jumps by ~360° in longitude between two vertices; elsewhere the
    fix returns the polygon unchanged, at ~15 ms a small raster. The margins are wide."""
    for ring in (polygon.exterior, *polygon.interiors):
        coords = np.asarray(ring.coords)
        lons, lats = coords[:, 0], coords[:, 1]
        if np.abs(np.diff(lons)).max(initial=0) > 90 or np.abs(lons).max() > 179:
            return True
        if np.abs(lats).max() > 89:
            return True
    return False


def _valid_outline(src: rasterio.DatasetReader) -> tuple[Any, float]:
    scale = max(1.0, max(src.width, src.height) / MASK_SIZE)
    rows, cols = max(1, round(src.height / scale)), max(1, round(src.width / scale))
    mask = src.dataset_mask(out_shape=(rows, cols), resampling=Resampling.nearest) > 0
    transform = src.transform * Affine.scale(src.width / cols, src.height / rows)
    found = [shape(g) for g, _ in shapes(mask.astype("uint8"), mask=mask, transform=transform)]
    if not found:
        raise FootprintError("the raster has no valid pixel to outline")
    return shapely.union_all(found), max(abs(transform.a), abs(transform.e))


def _polygons(geometry: Any) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry]
    return [g for g in getattr(geometry, "geoms", []) if isinstance(g, Polygon)]


def _to_lonlat(polygon: Polygon, crs: Any) -> Polygon | None:
    """The polygon projected point by point; points off the globe are dropped."""
    # pyproj returns inf for a point that does not project, where GDAL's transform
    # fails whole (the limb of a geostationary disk).
    to_lonlat = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    exterior = _ring(polygon.exterior.coords, to_lonlat)
    if exterior is None:
        return None
    holes = [h for h in (_ring(i.coords, to_lonlat) for i in polygon.interiors) if h is not None]
    return shapely.orient_polygons(Polygon(exterior, holes))


def _ring(
    coords: Iterable[Sequence[float]], to_lonlat: Transformer
) -> list[tuple[float, float]] | None:
    xs, ys = zip(*coords, strict=True)
    lons, lats = to_lonlat.transform(xs, ys, errcheck=False)
    kept = [
        (x, y) for x, y in zip(lons, lats, strict=True) if math.isfinite(x) and math.isfinite(y)
    ]
    return kept if len(kept) >= 4 else None


def _valid(geometry: Any) -> Any:
    """Polygons only, valid: a projected outline can touch itself at the limb."""
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    polygons = [p for p in _polygons_of(geometry) if not p.is_empty]
    if not polygons:
        return Polygon()
    return polygons[0] if len(polygons) == 1 else MultiPolygon(polygons)


def _polygons_of(geometry: Any) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry]
    if isinstance(geometry, MultiPolygon):
        return list(geometry.geoms)
    return [p for g in getattr(geometry, "geoms", []) for p in _polygons_of(g)]
