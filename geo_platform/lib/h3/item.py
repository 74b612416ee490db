"""STAC items of the H3 grids: one per ``h3_grid`` partition, in ``system-h3-grids``."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pystac
from pystac.extensions.table import Column, TableExtension
from shapely.geometry import mapping

from geo_platform.lib.h3.grid import cell_polygons
from geo_platform.lib.hashing import multihash_sha256
from geo_platform.lib.vector.item import GEOPARQUET_MEDIA_TYPE

H3_COLLECTION = "system-h3-grids"
WORLD_BBOX = [-180.0, -90.0, 180.0, 90.0]
_COLUMNS = {
    "h3_index": ("string", "the cell (H3 index, hexadecimal)"),
    "resolution": ("int32", "H3 resolution"),
    "parent": ("string", "the cell of the next coarser resolution (null at 0)"),
    "base_cell": ("int32", "H3 base cell number (0-121) of the resolution-0 ancestor"),
    "is_pentagon": ("boolean", "one of the 12 pentagons of the resolution"),
    "area_km2": ("float64", "the cell's area on H3's sphere"),
    "geom": ("geometry", "boundary, EPSG:4326; split at the antimeridian"),
}


def h3_collection() -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": pystac.get_stac_version(),
        "stac_extensions": [TableExtension.get_schema_uri()],
        "id": H3_COLLECTION,
        "description": "Complete global H3 grids made by geo_platform: one item per "
        "resolution (from resolution 5 on, per resolution-0 cell), with the warehouse "
        "table it is in and a GeoParquet export.",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [WORLD_BBOX]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }


def grid_item_id(resolution: int, base_cell: str | None = None) -> str:
    suffix = f"-{base_cell}" if base_cell else ""
    return f"h3-grid-res{resolution}{suffix}"


def build_grid_item(
    *,
    resolution: int,
    base_cell: str | None,
    rows: int,
    table_location: str,
    export: dict[str, Any],
    created: dt.datetime,
) -> dict[str, Any]:
    """The item of one partition: the whole globe, or the resolution-0 cell it covers."""
    if base_cell is None:
        w, s, e, n = WORLD_BBOX
        geometry: dict[str, Any] = {
            "type": "Polygon",
            "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
        }
        bbox = WORLD_BBOX
    else:
        (shape,) = cell_polygons([base_cell])
        geometry = mapping(shape)
        bbox = [float(v) for v in shape.bounds]
    item = pystac.Item(
        id=grid_item_id(resolution, base_cell),
        geometry=geometry,
        bbox=bbox,
        datetime=created,
        properties={
            "title": f"H3 resolution {resolution}"
            + (f", resolution-0 cell {base_cell}" if base_cell else ", global"),
            "h3:resolution": resolution,
            "geo_platform:table": table_location,
            **({"h3:base_cell": base_cell} if base_cell else {}),
        },
        stac_extensions=["https://stac-extensions.github.io/file/v2.1.0/schema.json"],
        collection=H3_COLLECTION,
    )
    table = TableExtension.ext(item, add_if_missing=True)
    table.columns = [
        Column({"name": name, "type": kind, "description": text})
        for name, (kind, text) in _COLUMNS.items()
    ]
    table.row_count = rows
    item.properties["table:primary_geometry"] = "geom"
    item.add_link(pystac.Link(pystac.RelType.COLLECTION, H3_COLLECTION, pystac.MediaType.JSON))
    item.add_asset(
        "data",
        pystac.Asset(
            href=export["href"],
            media_type=GEOPARQUET_MEDIA_TYPE,
            roles=["data"],
            title="GeoParquet export",
            extra_fields={
                "file:size": export["size"],
                "file:checksum": multihash_sha256(export["sha256"]),
            },
        ),
    )
    return json.loads(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)))
