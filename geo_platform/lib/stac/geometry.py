"""Item geometries as a catalog stores and searches them: WKB, envelope, intersection.

GEOS (through shapely) does the geometry work, as it does inside PostGIS for pgSTAC,
so that a catalog without PostGIS answers an intersection the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from geo_platform.errors import InvalidInputError
from geo_platform.lib.stac.bbox import Bbox, split_bbox
from geo_platform.lib.stac.geojson import shapes
from geo_platform.lib.stac.items import item_name
from geo_platform.lib.stac.search import bbox_search_geometry

if TYPE_CHECKING:
    import shapely

# shapely (~0.1 s to import) is imported where it is used: a search whose candidates
# all lie inside its box never needs it, and `stac search` is a short-lived command.


@dataclass(frozen=True)
class StoredGeometry:
    """An item's geometry as WKB (EPSG:4326) with its envelope (xmin, ymin, xmax, ymax)."""

    wkb: bytes
    bounds: tuple[float, float, float, float]


def item_geometries(items: Sequence[dict[str, Any]]) -> list[StoredGeometry]:
    """Each item's geometry (checked by :func:`item_problem` already) as GEOS reads it, in
    two dimensions; InvalidInputError names the first item GEOS cannot read."""
    import shapely

    geometries = shapes([item["geometry"] for item in items])
    for item, geometry in zip(items, geometries, strict=True):
        if geometry is None:
            raise InvalidInputError(item_name(item), "has a geometry GEOS cannot read")
    wkbs = shapely.to_wkb(geometries)
    bounds = shapely.bounds(geometries).tolist()
    return [
        StoredGeometry(wkb, (box[0], box[1], box[2], box[3]))
        for wkb, box in zip(wkbs.tolist(), bounds, strict=True)
    ]


class BoxMatcher:
    """Whether a stored geometry intersects a search bbox, as PostGIS's ST_Intersects.

    A geometry whose envelope lies inside the box (either box, across the antimeridian)
    intersects it without a test; only the others are read from WKB and tested against
    what :func:`bbox_search_geometry` makes of the bbox, exactly as the pgSTAC side
    searches.
    """

    def __init__(self, bbox: Bbox) -> None:
        self.bbox = bbox
        self.boxes = split_bbox(bbox)
        self._shape: shapely.Geometry | None = None

    def matches(self, wkb: bytes, bounds: tuple[float, float, float, float]) -> bool:
        xmin, ymin, xmax, ymax = bounds
        for west, south, east, north in self.boxes:
            if west <= xmin and xmax <= east and south <= ymin and ymax <= north:
                return True
        import shapely

        if self._shape is None:
            special = bbox_search_geometry(self.bbox)
            if special:
                self._shape = shapely.from_geojson(orjson.dumps(special))
            else:
                self._shape = shapely.box(*self.bbox)
            shapely.prepare(self._shape)
        return bool(shapely.intersects(self._shape, shapely.from_wkb(wkb)))
