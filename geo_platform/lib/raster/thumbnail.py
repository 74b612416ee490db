"""Small previews read from a COG's overviews: a PNG with transparency (the item's
``thumbnail`` asset) and a light JPEG for the Dagster UI's metadata."""

from __future__ import annotations

import base64
import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from rasterio.enums import Resampling
from rasterio.io import MemoryFile

THUMBNAIL_SIZE = 256


# Masked pixels of the JPEG preview (JPEG has no transparency): a light grey.
_BACKGROUND = 230


def thumbnail_png(path: str | Path, size: int = THUMBNAIL_SIZE) -> bytes:
    """RGBA PNG at most ``size`` pixels on its long side; masked pixels are transparent."""
    return _png(_rgba(path, size))


def thumbnail_jpeg(path: str | Path, size: int = THUMBNAIL_SIZE) -> bytes:
    """The same preview as a JPEG (a tenth of the PNG's bytes), masked pixels grey."""
    return _jpeg(_rgba(path, size))


def previews(path: str | Path, *, png: bool) -> tuple[str, bytes | None]:
    """``thumbnail_markdown`` and (if ``png``) ``thumbnail_png`` of one file from one read
    of its overviews: a small raster's previews cost as much as its tier otherwise."""
    rgba = _rgba(path, THUMBNAIL_SIZE)
    return _markdown(_jpeg(rgba)), _png(rgba) if png else None


def _png(rgba: np.ndarray) -> bytes:
    # zlib's fastest level: 3x faster than GDAL's default (6), the file a third larger;
    # the default cost a small raster more time than its tier.
    return _encode(rgba, "PNG", ZLEVEL="1")


def _jpeg(rgba: np.ndarray) -> bytes:
    valid = rgba[3:] > 0
    rgb = np.where(valid, rgba[:3], np.uint8(_BACKGROUND)).astype("uint8")
    return _encode(rgb, "JPEG", QUALITY="80")


def _rgba(path: str | Path, size: int) -> np.ndarray:
    with rasterio.open(path) as src:
        scale = size / max(src.width, src.height)
        shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
        bands = list(range(1, min(src.count, 3) + 1))
        if src.colorinterp[-1].name == "alpha" and len(bands) == src.count:
            bands = bands[:-1] or [1]
        data = src.read(
            bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest, masked=True
        )
        mask = src.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
        if src.colorinterp[0].name == "palette":
            rgb = _apply_colormap(data[0].filled(0), src.colormap(1))
        else:
            rgb = np.stack([_stretch(band) for band in data])
            if rgb.shape[0] == 1:
                rgb = np.repeat(rgb, 3, axis=0)
            elif rgb.shape[0] == 2:
                rgb = np.concatenate([rgb, rgb[:1]])
        mask &= ~np.ma.getmaskarray(data).any(axis=0)
        if data.dtype.kind == "f":
            mask &= np.isfinite(data.filled(0)).all(axis=0)
    alpha = np.where(mask, 255, 0).astype("uint8")[None]
    return np.concatenate([rgb.astype("uint8"), alpha])


def _encode(pixels: np.ndarray, driver: str, **options: str) -> bytes:
    count, height, width = pixels.shape
    # A preview has no georeferencing, and needs none.
    with warnings.catch_warnings(), MemoryFile() as mem:
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with mem.open(
            driver=driver, width=width, height=height, count=count, dtype="uint8", **options
        ) as image:
            image.write(pixels)
        return mem.read()


def thumbnail_markdown(path: str | Path) -> str:
    """Markdown the Dagster UI renders as an image, shown without a click (it has no
    image metadata type): the JPEG preview as a data URI."""
    return _markdown(thumbnail_jpeg(path))


def _markdown(jpeg: bytes) -> str:
    return f"![thumbnail](data:image/jpeg;base64,{base64.b64encode(jpeg).decode()})"


def _stretch(band: np.ma.MaskedArray) -> np.ndarray:
    if band.dtype == np.uint8:
        return band.filled(0)
    values = band.compressed()
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if values.size == 0:
        return np.zeros(band.shape, dtype="uint8")
    low, high = np.percentile(values, (2, 98))
    span = float(high - low) or 1.0
    filled = band.filled(low).astype("float64")
    filled[~np.isfinite(filled)] = low
    return np.clip((filled - low) / span * 255, 0, 255).astype("uint8")


def _apply_colormap(index: np.ndarray, colormap: dict[int, tuple[int, ...]]) -> np.ndarray:
    lookup = np.zeros((256, 3), dtype="uint8")
    for value, color in colormap.items():
        if 0 <= value < 256:
            lookup[value] = color[:3]
    return np.moveaxis(lookup[index.astype("uint8")], -1, 0)
