"""Build the STAC item of one raster from its source and its stored tiers.

Composed from rio-stac's parts (footprint, projection and raster info) rather than
``create_stac_item``, because some real rasters (a full-disk geostationary image)
have corners in space: their footprint comes from the valid-data mask instead.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable

import numpy as np
import pystac
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError
from rasterio.features import shapes
from rasterio.warp import transform as transform_points
from rio_stac.stac import (
    PROJECTION_EXT_VERSION,
    RASTER_EXT_VERSION,
    get_dataset_geom,
    get_projection_info,
    get_raster_info,
)
from shapely.geometry import Polygon, mapping, shape
from shapely.ops import unary_union

from geo_platform.lib.hashing import multihash_sha256
from geo_platform.lib.raster.tiers import COG_MEDIA_TYPE, TIER_SPECS, Tier, TierRef
from geo_platform.lib.stac.ids import collection_id, item_id

EXTENSIONS = [
    f"https://stac-extensions.github.io/projection/{PROJECTION_EXT_VERSION}/schema.json",
    f"https://stac-extensions.github.io/raster/{RASTER_EXT_VERSION}/schema.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json",
]
_MASK_FOOTPRINT_SIZE = 512


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
        footprint = dataset_footprint(src)
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
            geometry=footprint["footprint"],
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


def dataset_footprint(src: rasterio.DatasetReader) -> dict:
    """rio-stac's bounds footprint, or the valid-data outline where the corners don't project."""
    try:
        return get_dataset_geom(src, densify_pts=21, precision=7)
    except (RasterioError, CPLE_BaseError, SystemError):
        # rasterio raises SystemError when GDAL fails without setting an error.
        return _mask_footprint(src)


def _mask_footprint(src: rasterio.DatasetReader) -> dict:
    scale = max(1.0, max(src.width, src.height) / _MASK_FOOTPRINT_SIZE)
    out_shape = (max(1, int(src.height / scale)), max(1, int(src.width / scale)))
    mask = (src.dataset_mask(out_shape=out_shape) > 0).astype("uint8")
    transform = src.transform * Affine.scale(src.width / out_shape[1], src.height / out_shape[0])
    polygons = [shape(g) for g, _ in shapes(mask, mask=mask.astype(bool), transform=transform)]
    if not polygons:
        raise RasterioError("raster has no valid pixels to outline")
    outline = unary_union(polygons).convex_hull.segmentize(abs(transform.a) * 4)
    # Project the outline point by point: points off the globe come back as inf
    # and are dropped, where GDAL's geometry transform would fail whole.
    xs, ys = outline.exterior.coords.xy
    lons, lats = transform_points(src.crs, "EPSG:4326", list(xs), list(ys))
    kept = [(x, y) for x, y in zip(lons, lats, strict=True) if np.isfinite(x) and np.isfinite(y)]
    if len(kept) < 3:
        raise RasterioError("raster outline does not project to longitude/latitude")
    geom = mapping(Polygon(kept).convex_hull)
    geom["coordinates"] = [[[round(x, 7), round(y, 7)] for x, y in geom["coordinates"][0]]]
    coords = np.asarray(shape(geom).exterior.coords)
    bbox = [*coords.min(axis=0).tolist(), *coords.max(axis=0).tolist()]
    return {"bbox": bbox, "footprint": geom}


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
