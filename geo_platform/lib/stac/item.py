"""Build the STAC item of one raster from its source and its stored tiers.

Composed from rio-stac's parts (projection and raster info) rather than
``create_stac_item``: the geometry is the valid-data footprint (``footprint``), split at
the antimeridian, where rio-stac's is the bounds (and fails where corners are in space,
as for a full-disk geostationary image).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import pystac
import rasterio
from rio_stac.stac import (
    PROJECTION_EXT_VERSION,
    RASTER_EXT_VERSION,
    get_projection_info,
    get_raster_info,
)

from geo_platform.errors import InvalidInputError
from geo_platform.lib.hashing import multihash_sha256
from geo_platform.lib.raster.tiers import COG_MEDIA_TYPE, TIER_SPECS, Tier, TierRef
from geo_platform.lib.stac.footprint import FootprintError, raster_footprint
from geo_platform.lib.stac.ids import collection_id, item_id

EXTENSIONS = [
    f"https://stac-extensions.github.io/projection/{PROJECTION_EXT_VERSION}/schema.json",
    f"https://stac-extensions.github.io/raster/{RASTER_EXT_VERSION}/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
]


def build_item(
    gdal_path: str,
    blob_key: str,
    tiers: Iterable[TierRef],
    *,
    source_sha256: str,
    fallback_datetime: dt.datetime,
) -> dict:
    """One item per raster: an asset per stored tier, projection and raster fields.

    ``gdal_path`` is what GDAL opens for footprint and statistics (ideally the
    analysis tier, whose overviews make statistics cheap). The datetime is the
    file's own acquisition/TIFF date, else ``fallback_datetime`` (the blob's
    modification time) so that re-ingesting the same file gives the same item.
    """
    tiers = sorted(tiers, key=lambda ref: list(Tier).index(ref.tier))
    collection = collection_id(blob_key)
    with rasterio.open(gdal_path) as src:
        try:
            footprint = raster_footprint(src)
        except FootprintError as e:
            raise InvalidInputError(blob_key, str(e)) from None
        raster_bands = get_raster_info(src)
        properties = {f"proj:{k}": v for k, v in get_projection_info(src).items()}
        properties.update(
            {
                "geo_platform:source": blob_key,
                "geo_platform:source_checksum": multihash_sha256(source_sha256),
                "geo_platform:tiers": [ref.tier.value for ref in tiers],
            }
        )
        item = pystac.Item(
            id=item_id(blob_key),
            geometry=footprint["geometry"],
            bbox=footprint["bbox"],
            datetime=_own_datetime(src) or fallback_datetime,
            properties=properties,
            stac_extensions=list(EXTENSIONS),
            collection=collection,
        )
    item.add_link(pystac.Link(pystac.RelType.COLLECTION, collection, pystac.MediaType.JSON))
    for ref in tiers:
        item.add_asset(ref.tier.value, _asset(ref, raster_bands))
    # A JSON round trip turns rio-stac's tuples into lists, as any catalog will store them.
    return json.loads(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)))


def _own_datetime(src: rasterio.DatasetReader) -> dt.datetime | None:
    """The acquisition or TIFF date the file carries, if it parses."""
    value = src.get_tag_item("ACQUISITIONDATETIME", "IMAGERY") or src.get_tag_item(
        "TIFFTAG_DATETIME"
    )
    if not value:
        return None
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(value.strip()[:19], fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None


def _asset(ref: TierRef, raster_bands: list[dict]) -> pystac.Asset:
    spec = TIER_SPECS[ref.tier]
    extra: dict = {
        "file:size": ref.size_bytes,
        "file:checksum": multihash_sha256(ref.sha256),
        "geo_platform:tier": ref.tier.value,
        "geo_platform:storage_class": spec.storage_class,
    }
    if spec.lossless:
        extra["raster:bands"] = raster_bands
    return pystac.Asset(
        href=ref.href,
        media_type=COG_MEDIA_TYPE,
        roles=[spec.stac_role],
        title=f"{ref.tier.value} COG",
        extra_fields=extra,
    )
