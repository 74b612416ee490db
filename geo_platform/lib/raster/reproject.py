"""Reproject a raster to a collection's target CRS, window by window.

The output grid keeps every detail: its pixel size is the *smallest* size a source pixel
takes in the target CRS anywhere over the raster (measured along both pixel sides at a
grid of points across it), used for both axes. Every source pixel is then at least one
output pixel wide and high wherever it lands, so no source value is averaged away by the
grid itself (GDAL's default, ``gdalwarp`` without ``-tr``, keeps the pixel count of the
diagonal instead: where the projection stretches pixels unevenly, as Web Mercator does
with latitude, part of the raster comes out coarser than its source). The extent is
GDAL's suggested output extent at that resolution.

Nodata and masks survive: a source with a nodata value keeps it (the area outside the
source becomes nodata), an alpha band stays an alpha band, and any other source (a mask
band, or none) gets a mask band that is the warper's alpha (valid where it is non-zero).
Paletted rasters keep their colormap.

GDAL's warper gives slightly different pixels along the edges of nodata and masks
depending on how the output is cut into chunks (measured on image_nodata.tif to Web
Mercator: 7,466 of 373,321 pixels differ between one whole read of a WarpedVRT and reads
of 100-row strips, every one at the edge of the valid data). The warp here is written in
strips of 512 rows; the lossless checks compare the tiers with this warp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform
from rasterio.windows import Window

from geo_platform.errors import InvalidInputError

# Points per side of the grid where the projected pixel size is measured.
_SAMPLES = 21
# Rows written at once: windowed, so the memory a warp takes does not grow with the raster.
_STRIP_ROWS = 512
BLOCKSIZE = 512


@dataclass(frozen=True)
class WarpPlan:
    """The output grid and resampling of one raster's reprojection: what an equivalent
    ``gdalwarp -t_srs CRS -tr RES RES -te ... -r RESAMPLING`` would be given."""

    crs: str
    transform: Affine
    width: int
    height: int
    resampling: Resampling

    @property
    def resolution(self) -> float:
        return self.transform.a

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        west, north = self.transform.c, self.transform.f
        return (
            west,
            north + self.transform.e * self.height,
            west + self.transform.a * self.width,
            north,
        )

    def gdalwarp_args(self) -> list[str]:
        """The same warp as ``gdalwarp`` arguments (benchmarks and tests compare with it)."""
        return [
            "-t_srs", self.crs,
            "-tr", repr(self.resolution), repr(-self.transform.e),
            "-te", *(repr(v) for v in self.bounds),
            "-r", self.resampling.name,
        ]  # fmt: skip

    def made_with(self) -> dict[str, object]:
        return {
            "target_crs": self.crs,
            "resolution": self.resolution,
            "resampling": self.resampling.name,
        }


def finest_resolution(src: rasterio.DatasetReader, target: CRS) -> float:
    """The smallest projected length of a source pixel's sides over the raster."""
    cols = np.linspace(0, src.width - 1, _SAMPLES)
    rows = np.linspace(0, src.height - 1, _SAMPLES)
    cc, rr = (a.ravel() for a in np.meshgrid(cols, rows))
    sizes = []
    for dc, dr in ((1, 0), (0, 1)):
        x0, y0 = src.transform * (cc + 0.5, rr + 0.5)
        x1, y1 = src.transform * (cc + 0.5 + dc, rr + 0.5 + dr)
        tx0, ty0 = transform(src.crs, target, list(x0), list(y0))
        tx1, ty1 = transform(src.crs, target, list(x1), list(y1))
        length = np.hypot(np.subtract(tx1, tx0), np.subtract(ty1, ty0))
        sizes.append(length[np.isfinite(length) & (length > 0)])
    found = np.concatenate(sizes)
    if found.size == 0:
        raise ValueError("no pixel of the raster projects to the target CRS")
    return float(found.min())


def plan_warp(
    src: rasterio.DatasetReader,
    target_crs: str,
    resampling: Resampling,
    *,
    name: str,
    max_pixels: int,
) -> WarpPlan:
    """The output grid of ``src`` in ``target_crs`` (see the module's docstring)."""
    target = CRS.from_user_input(target_crs)
    try:
        resolution = finest_resolution(src, target)
        dst_transform, width, height = calculate_default_transform(
            src.crs, target, src.width, src.height, *src.bounds, resolution=resolution
        )
    except (ValueError, rasterio.errors.RasterioError) as e:
        raise InvalidInputError(name, f"cannot be reprojected to {target_crs} ({e})") from None
    if width is None or height is None or width * height > max_pixels:
        raise InvalidInputError(
            name,
            f"reprojected to {target_crs} without losing detail it would be {width} x {height} "
            f"pixels, over the limit of {max_pixels:,} (GEO_PLATFORM_LIMIT_MAX_PIXELS)",
        )
    return WarpPlan(target_crs, dst_transform, width, height, resampling)


def write_warped(
    source: str | Path, plan: WarpPlan, out_path: str | Path, *, threads: int | str = "ALL_CPUS"
) -> Path:
    """Warp ``source`` onto ``plan``'s grid as an uncompressed tiled GeoTIFF, a strip of
    rows at a time, keeping bands' metadata, nodata, alpha or mask (module docstring)."""
    out_path = Path(out_path)
    with rasterio.open(source) as src:
        has_alpha = ColorInterp.alpha in src.colorinterp
        add_alpha = src.nodata is None and not has_alpha
        vrt_options: dict = {
            "crs": plan.crs,
            "transform": plan.transform,
            "width": plan.width,
            "height": plan.height,
            "resampling": plan.resampling,
            "warp_mem_limit": 256,
            # A warp option (rasterio passes unknown keywords to GDAL's warper).
            "NUM_THREADS": str(threads),
        }
        if src.nodata is not None:
            vrt_options.update(src_nodata=src.nodata, nodata=src.nodata)
        profile = {
            "driver": "GTiff",
            "width": plan.width,
            "height": plan.height,
            "count": src.count,
            "dtype": src.dtypes[0],
            "crs": plan.crs,
            "transform": plan.transform,
            "nodata": src.nodata,
            "tiled": True,
            "blockxsize": BLOCKSIZE,
            "blockysize": BLOCKSIZE,
            "compress": "none",
            "BIGTIFF": "IF_SAFER",
        }
        paletted = src.colorinterp[0] == ColorInterp.palette
        with (
            WarpedVRT(src, add_alpha=add_alpha, **vrt_options) as vrt,
            rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True),
            rasterio.open(out_path, "w", **profile) as dst,
        ):
            dst.colorinterp = src.colorinterp
            if paletted:
                dst.write_colormap(1, src.colormap(1))
            dst.scales, dst.offsets = src.scales, src.offsets
            dst.descriptions = src.descriptions
            dst.units = src.units
            bands = list(range(1, src.count + 1))
            for row in range(0, plan.height, _STRIP_ROWS):
                window = Window(0, row, plan.width, min(_STRIP_ROWS, plan.height - row))
                dst.write(vrt.read(bands, window=window), bands, window=window)
                if add_alpha:
                    alpha = vrt.read(vrt.count, window=window)
                    dst.write_mask(np.where(alpha > 0, 255, 0).astype("uint8"), window=window)
    return out_path
