"""What a collection asks of its rasters beyond the tiers: the ``raster:`` section of the
collections file::

    mercator:
      output_tier: analysis
      raster:
        target_crs: EPSG:3857   # reproject every raster of the collection to this CRS
        resampling: auto        # auto (default), nearest, bilinear, cubic, average, mode...
        categorical: false      # true: class values, never interpolated (nearest)

``auto`` picks nearest for paletted rasters and for collections marked ``categorical``,
bilinear otherwise (it stays within the range of its neighbours: no overshoot, unlike
cubic).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError

AUTO = "auto"
CONTINUOUS_RESAMPLING = Resampling.bilinear
RESAMPLING_CHOICES = (
    "auto",
    "nearest",
    "bilinear",
    "cubic",
    "cubic_spline",
    "lanczos",
    "average",
    "mode",
)


@dataclass(frozen=True)
class RasterOptions:
    target_crs: str | None = None
    resampling: str = AUTO
    categorical: bool = False

    def made_with(self) -> str:
        """What the outputs depend on, as a short fingerprint (a valid Dagster tag value):
        recorded with every raster and tier, so that a change of the collection's
        settings shows which rasters to make again. Empty when nothing is asked."""
        if self.target_crs is None:
            return ""
        described = f"{self.target_crs}|{self.resampling}|{self.categorical}"
        return "warp-" + hashlib.sha256(described.encode()).hexdigest()[:16]

    def resampling_for(self, paletted: bool) -> Resampling:
        if self.resampling != AUTO:
            return Resampling[self.resampling]
        if paletted or self.categorical:
            return Resampling.nearest
        return CONTINUOUS_RESAMPLING


def parse_raster_options(section: Any) -> RasterOptions:
    """The ``raster:`` section of one collection; ValueError naming the problem."""
    if section is None:
        return RasterOptions()
    if not isinstance(section, dict):
        raise ValueError("raster: expected a mapping (target_crs, resampling, categorical)")
    unknown = set(section) - {"target_crs", "resampling", "categorical"}
    if unknown:
        raise ValueError(f"raster: unknown setting(s) {', '.join(sorted(map(str, unknown)))}")
    target = section.get("target_crs")
    if target is not None:
        try:
            CRS.from_user_input(str(target))
        except CRSError as e:
            raise ValueError(f"raster: target_crs {target!r} is not a CRS ({e})") from None
        target = str(target).strip()
    resampling = str(section.get("resampling", AUTO)).strip().lower()
    if resampling not in RESAMPLING_CHOICES:
        raise ValueError(
            f"raster: resampling {resampling!r} is not one of {' | '.join(RESAMPLING_CHOICES)}"
        )
    categorical = section.get("categorical", False)
    if not isinstance(categorical, bool):
        raise ValueError(f"raster: categorical must be true or false, not {categorical!r}")
    return RasterOptions(target_crs=target, resampling=resampling, categorical=categorical)


def raster_options(collection: str, config: dict[str, dict]) -> RasterOptions:
    return parse_raster_options(config.get(collection, {}).get("raster"))
