"""Build the STAC item of one raster from its source and its stored tiers.

The geometry is the valid-data footprint (``footprint``), split at the antimeridian,
where rio-stac's is the bounds (and fails where corners are in space, as for a
full-disk geostationary image). Projection, raster and file fields are written through
pystac's extension classes, so that the item declares exactly the schemas it follows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pystac
import rasterio
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import (
    DataType,
    NoDataStrings,
    RasterBand,
    RasterExtension,
    Sampling,
    Statistics,
)

from geo_platform.errors import InvalidInputError
from geo_platform.lib.hashing import multihash_sha256
from geo_platform.lib.raster.tiers import COG_MEDIA_TYPE, TIER_SPECS, Tier, TierRef
from geo_platform.lib.stac.footprint import FootprintError, raster_footprint
from geo_platform.lib.stac.ids import collection_id, item_id

# Statistics are computed from an overview no larger than this (the analysis tier has
# them), like rio-stac's, but counting valid pixels right.
STATISTICS_MAX_SIZE = 1024
# Where a raster's own date may be, in the order they are trusted: (domain, tag).
DATETIME_TAGS = (
    ("IMAGERY", "ACQUISITIONDATETIME"),
    ("", "ACQUISITIONDATETIME"),
    ("", "ACQUISITION_DATETIME"),
    ("", "DATE_ACQUIRED"),
    ("", "TIFFTAG_DATETIME"),
)
_DATETIME_FORMATS = ("%Y:%m:%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
BLOB_TIME = "blob last modified"
THUMBNAIL_MEDIA_TYPE = "image/png"


@dataclass(frozen=True)
class ThumbnailRef:
    """A stored thumbnail PNG of the item."""

    href: str
    size_bytes: int
    sha256: str


def build_item(
    gdal_path: str,
    blob_key: str,
    tiers: Iterable[TierRef],
    *,
    source_sha256: str,
    fallback_datetime: dt.datetime,
    source_path: str | None = None,
    thumbnail: ThumbnailRef | None = None,
    overview_resampling: str | None = None,
    collection_href: str | None = None,
) -> dict:
    """One item per raster: an asset per stored tier (and the thumbnail), projection
    and raster fields.

    ``gdal_path`` is what GDAL opens for footprint and statistics (ideally the
    analysis tier, whose overviews make statistics cheap). The datetime is the
    source's own (``source_path``, else ``gdal_path``), else ``fallback_datetime``
    (the blob's modification time), so that re-ingesting the same file gives the same
    item; ``geo_platform:datetime_source`` says which. ``collection_href``: where the
    collection's document is published (the collection link's href; else its id).
    """
    tiers = sorted(tiers, key=lambda ref: list(Tier).index(ref.tier))
    collection = collection_id(blob_key)
    with rasterio.open(source_path or gdal_path) as src:
        found = own_datetime(src)
    when, datetime_source = found or (fallback_datetime, BLOB_TIME)
    with rasterio.open(gdal_path) as src:
        try:
            footprint = raster_footprint(src)
        except FootprintError as e:
            raise InvalidInputError(blob_key, str(e)) from None
        properties: dict[str, Any] = {
            "geo_platform:source": blob_key,
            "geo_platform:source_checksum": multihash_sha256(source_sha256),
            "geo_platform:tiers": [ref.tier.value for ref in tiers],
            "geo_platform:datetime_source": datetime_source,
        }
        if overview_resampling:
            properties["geo_platform:overview_resampling"] = overview_resampling
        if (gsd := ground_sample_distance(src)) is not None:
            properties["gsd"] = gsd
        item = pystac.Item(
            id=item_id(blob_key),
            geometry=footprint["geometry"],
            bbox=footprint["bbox"],
            datetime=when,
            properties=properties,
            collection=collection,
        )
        _apply_projection(ProjectionExtension.ext(item, add_if_missing=True), src)
        bands = raster_bands(src)
    item.add_link(
        pystac.Link(pystac.RelType.COLLECTION, collection_href or collection, pystac.MediaType.JSON)
    )
    for ref in tiers:
        item.add_asset(ref.tier.value, _asset(ref))
        asset = item.assets[ref.tier.value]
        FileExtension.ext(asset, add_if_missing=True).apply(
            size=ref.size_bytes, checksum=multihash_sha256(ref.sha256)
        )
        if TIER_SPECS[ref.tier].lossless:
            RasterExtension.ext(asset, add_if_missing=True).apply(bands)
    if thumbnail is not None:
        item.add_asset(
            "thumbnail",
            pystac.Asset(
                href=thumbnail.href,
                media_type=THUMBNAIL_MEDIA_TYPE,
                roles=["thumbnail"],
                title="thumbnail",
                extra_fields={"geo_platform:storage_class": "hot"},
            ),
        )
        FileExtension.ext(item.assets["thumbnail"], add_if_missing=True).apply(
            size=thumbnail.size_bytes, checksum=multihash_sha256(thumbnail.sha256)
        )
    # A JSON round trip turns tuples into lists, as any catalog will store them.
    return json.loads(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)))


def own_datetime(src: rasterio.DatasetReader) -> tuple[dt.datetime, str] | None:
    """The acquisition or TIFF date the raster carries, if one parses, and the tag it
    came from (``IMAGERY:ACQUISITIONDATETIME``, ``TIFFTAG_DATETIME``...)."""
    for domain, tag in DATETIME_TAGS:
        value = src.get_tag_item(tag, domain or None)
        if not value:
            continue
        for fmt in _DATETIME_FORMATS:
            try:
                parsed = dt.datetime.strptime(value.strip()[:19], fmt).replace(tzinfo=dt.UTC)
            except ValueError:
                continue
            return parsed, f"{domain}:{tag}" if domain else tag
    return None


def ground_sample_distance(src: rasterio.DatasetReader) -> float | None:
    """The pixel size in metres where the CRS is projected (None in degrees)."""
    if src.crs is None or not src.crs.is_projected:
        return None
    _, to_metres = src.crs.linear_units_factor
    x, y = src.res
    return round(float((x + y) / 2 * to_metres), 6)


def raster_bands(src: rasterio.DatasetReader) -> list[RasterBand]:
    """``raster:bands`` of every band: type, nodata, scale/offset, unit and statistics
    of the valid pixels, read from an overview of at most ``STATISTICS_MAX_SIZE``."""
    scale = min(1.0, STATISTICS_MAX_SIZE / max(src.width, src.height))
    shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
    area_or_point = src.tags().get("AREA_OR_POINT", "").lower()
    bands = []
    for index in src.indexes:
        data = src.read(index, out_shape=shape, masked=True)
        band = RasterBand.create(
            data_type=DataType(src.dtypes[index - 1]),
            nodata=_nodata(src.nodata),
            scale=src.scales[index - 1],
            offset=src.offsets[index - 1],
            unit=src.units[index - 1] or None,
            sampling=Sampling(area_or_point) if area_or_point in ("area", "point") else None,
            statistics=band_statistics(data),
        )
        bands.append(band)
    return bands


def band_statistics(data: np.ma.MaskedArray) -> Statistics:
    """Minimum, maximum, mean, standard deviation and the share of valid pixels (masked
    or not finite: invalid) in percent."""
    valid = ~np.ma.getmaskarray(data)
    if data.dtype.kind == "f":
        valid &= np.isfinite(data.filled(0))
    values = np.asarray(data.data)[valid].astype("float64")
    valid_percent = round(float(valid.sum()) / data.size * 100, 4) if data.size else 0.0
    if values.size == 0:
        return Statistics.create(valid_percent=valid_percent)
    return Statistics.create(
        minimum=_number(values.min()),
        maximum=_number(values.max()),
        mean=float(values.mean()),
        stddev=float(values.std()),
        valid_percent=valid_percent,
    )


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def _nodata(value: float | None) -> float | NoDataStrings | None:
    if value is None:
        return None
    if np.isnan(value):
        return NoDataStrings.NAN
    if np.isinf(value):
        return NoDataStrings.INF if value > 0 else NoDataStrings.NINF
    return value


def _apply_projection(proj: ProjectionExtension, src: rasterio.DatasetReader) -> None:
    epsg = src.crs.to_epsg() if src.crs.is_epsg_code else None
    west, south, east, north = src.bounds
    proj.apply(
        code=f"EPSG:{epsg}" if epsg else None,
        wkt2=None if epsg else src.crs.to_wkt(),
        bbox=[west, south, east, north],
        shape=[src.height, src.width],
        transform=list(src.transform)[:6],
    )


def _asset(ref: TierRef) -> pystac.Asset:
    spec = TIER_SPECS[ref.tier]
    return pystac.Asset(
        href=ref.href,
        media_type=COG_MEDIA_TYPE,
        roles=[spec.stac_role],
        title=f"{ref.tier.value} COG",
        extra_fields={
            "geo_platform:tier": ref.tier.value,
            "geo_platform:storage_class": spec.storage_class,
        },
    )
