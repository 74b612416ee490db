"""The STAC item of a vector table: the table extension (columns, row count), its
footprint and bbox, and an asset pointing at its GeoParquet export."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pystac
from pystac.extensions.table import Column, TableExtension

from geo_platform.lib.hashing import multihash_sha256

VECTOR_COLLECTION = "vectors"
GEOPARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"
PMTILES_MEDIA_TYPE = "application/vnd.pmtiles"


def vector_collection() -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": pystac.get_stac_version(),
        "stac_extensions": [TableExtension.get_schema_uri()],
        "id": VECTOR_COLLECTION,
        "description": "Vector tables loaded by geo_platform: one item per table "
        "(blob key and layer), with its columns, row count and a GeoParquet export.",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }


def build_vector_item(
    blob_key: str,
    record: dict[str, Any],
    *,
    source_sha256: str,
    loaded_at: dt.datetime,
    table_location: str,
) -> dict[str, Any]:
    """One item per table; id = the table name (one-to-one with blob key and layer)."""
    item = pystac.Item(
        id=record["table"],
        geometry=record.get("footprint"),
        bbox=record.get("bbox"),
        datetime=loaded_at,
        properties={
            "title": f"{blob_key}" + (f" (layer {record['layer']})" if record.get("layer") else ""),
            "geo_platform:source": blob_key,
            "geo_platform:source_checksum": multihash_sha256(source_sha256),
            "geo_platform:layer": record.get("layer"),
            "geo_platform:table": table_location,
            "geo_platform:geometry_types": record.get("geometry_types", []),
            "geo_platform:repaired": record.get("repaired", 0),
            "geo_platform:dropped": record.get("dropped", 0),
            "proj:code": f"EPSG:{record['srid']}",
        },
        stac_extensions=["https://stac-extensions.github.io/file/v2.1.0/schema.json"],
        collection=VECTOR_COLLECTION,
    )
    table = TableExtension.ext(item, add_if_missing=True)
    table.columns = (
        [Column({"name": "fid", "type": "int64", "description": "feature id"})]
        + [
            Column(
                {
                    "name": c["name"],
                    "type": c["type"],
                    **(
                        {"description": f"source field {c['source']!r} ({c['why']})"}
                        if c["why"]
                        else {}
                    ),
                }
            )
            for c in record["columns"]
        ]
        + [Column({"name": "geom", "type": "geometry", "description": f"EPSG:{record['srid']}"})]
    )
    table.row_count = int(record["rows"])
    item.properties["table:primary_geometry"] = "geom"
    item.add_link(pystac.Link(pystac.RelType.COLLECTION, VECTOR_COLLECTION, pystac.MediaType.JSON))
    export = record.get("export")
    if export:
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
