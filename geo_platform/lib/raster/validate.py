"""Decide whether a file is a usable georeferenced raster, and which tiers apply to it.

Everything here reads headers and a few blocks: a file whose header claims
10^6 x 10^6 pixels is rejected before a single pixel is read.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from geo_platform.errors import InvalidInputError
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.raster.tiers import Tier
from geo_platform.settings import LimitSettings

_UNSUPPORTED_DTYPES = {"complex64", "complex128", "complex_int16", "complex_int32"}


@dataclass(frozen=True)
class RasterInfo:
    """What validation learned about a source raster; small, and safe to pickle."""

    name: str
    driver: str
    width: int
    height: int
    count: int
    dtype: str
    crs: str
    bounds: tuple[float, float, float, float]
    nodata: float | None
    has_mask: bool
    has_alpha: bool
    colorinterp: tuple[str, ...]
    size_bytes: int
    sha256: str
    applicable: dict[str, bool] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def to_dict(self) -> dict:
        return asdict(self)


def validate_raster(
    path: str | Path, limits: LimitSettings, name: str | None = None, sha256: str | None = None
) -> RasterInfo:
    """Validate ``path``; raise :class:`InvalidInputError` naming ``name`` and the problem.

    ``sha256``: the file's checksum when already known (recorded at upload), else
    computed here.
    """
    path = Path(path)
    name = name or path.name
    size = _check_file_size(path, name, limits)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            src = rasterio.open(path)
        except RasterioError as e:
            raise InvalidInputError(name, f"not a readable raster ({_first_line(e)})") from None
    with src:
        _check_dimensions(src, name, limits)
        _check_georeferencing(src, name)
        _check_dtype(src, name)
        _check_decoded_size(src, name, limits)
        _probe_blocks(src, name)
        has_alpha = ColorInterp.alpha in src.colorinterp
        has_mask = any(MaskFlags.per_dataset in flags for flags in src.mask_flag_enums)
        applicable, reasons = tier_applicability(
            src.count, src.dtypes[0], tuple(src.colorinterp), has_alpha
        )
        return RasterInfo(
            name=name,
            driver=src.driver,
            width=src.width,
            height=src.height,
            count=src.count,
            dtype=src.dtypes[0],
            crs=src.crs.to_string(),
            bounds=tuple(src.bounds),
            nodata=None if src.nodata is None else float(src.nodata),
            has_mask=has_mask,
            has_alpha=has_alpha,
            colorinterp=tuple(ci.name for ci in src.colorinterp),
            size_bytes=size,
            sha256=sha256 or sha256_file(path),
            applicable=applicable,
            reasons=reasons,
        )


def tier_applicability(
    count: int, dtype: str, colorinterp: tuple[ColorInterp, ...], has_alpha: bool
) -> tuple[dict[str, bool], dict[str, str]]:
    """Which tiers apply; for each that does not, why.

    JPEG holds 8-bit RGB only: three uint8 bands, or four where the fourth is alpha
    (which becomes the COG's mask). Every raster gets the lossless tiers.
    """
    is_rgb = count == 3 or (count == 4 and has_alpha and colorinterp[3] == ColorInterp.alpha)
    applicable = {Tier.VISUALIZATION.value: is_rgb and dtype == "uint8"}
    reasons = {}
    if not applicable[Tier.VISUALIZATION.value]:
        reasons[Tier.VISUALIZATION.value] = (
            f"visualization (JPEG) needs 3-band uint8 RGB (alpha allowed); "
            f"this raster has {count} band(s) of {dtype}"
        )
    applicable[Tier.ANALYSIS.value] = True
    applicable[Tier.ARCHIVE.value] = True
    return applicable, reasons


def _check_file_size(path: Path, name: str, limits: LimitSettings) -> int:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InvalidInputError(name, "file not found") from None
    return check_file_size(size, name, limits)


def check_file_size(size: int, name: str, limits: LimitSettings) -> int:
    """The size limits, checkable from a blob's properties before it is downloaded."""
    if size == 0:
        raise InvalidInputError(name, "empty file (0 bytes)")
    if size > limits.max_file_bytes:
        raise InvalidInputError(
            name, f"file is {size:,} bytes, over the limit of {limits.max_file_bytes:,}"
        )
    return size


def _check_dimensions(src: rasterio.DatasetReader, name: str, limits: LimitSettings) -> None:
    pixels = src.width * src.height
    if pixels > limits.max_pixels:
        raise InvalidInputError(
            name,
            f"{src.width} x {src.height} = {pixels:,} pixels, "
            f"over the limit of {limits.max_pixels:,} (GEO_PLATFORM_LIMIT_MAX_PIXELS)",
        )
    if src.count == 0:
        raise InvalidInputError(name, "raster has no bands")
    if src.count > limits.max_bands:
        raise InvalidInputError(name, f"{src.count} bands, over the limit of {limits.max_bands}")


def _check_decoded_size(src: rasterio.DatasetReader, name: str, limits: LimitSettings) -> None:
    """The pixel limit alone lets through 2·10⁹ pixels of 64 float64 bands: what the
    tiers decode (into memory and onto scratch disk) is bytes."""
    sample_bytes = {np.dtype(dtype).itemsize for dtype in src.dtypes}.pop()
    decoded = src.width * src.height * src.count * sample_bytes
    if decoded > limits.max_decoded_bytes:
        bands = f"{src.count} band{'s' if src.count > 1 else ''}"
        raise InvalidInputError(
            name,
            f"decodes to {human_bytes(decoded)} ({src.width:,} x {src.height:,} pixels x "
            f"{bands} of {src.dtypes[0]}), over the limit of "
            f"{human_bytes(limits.max_decoded_bytes)} (GEO_PLATFORM_LIMIT_MAX_DECODED_BYTES)",
        )


def human_bytes(size: int) -> str:
    """``3.4 GiB``: binary units, as the limits are set."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size:,} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _check_georeferencing(src: rasterio.DatasetReader, name: str) -> None:
    has_transform = not src.transform.is_identity
    has_gcps = bool(src.gcps[0])
    if src.crs is None and not has_transform:
        if has_gcps:
            raise InvalidInputError(
                name,
                "georeferenced by ground control points only; warp it to a grid "
                "(e.g. gdalwarp) before ingesting",
            )
        raise InvalidInputError(name, "not georeferenced: no CRS and no geotransform")
    if src.crs is None:
        raise InvalidInputError(name, "has a geotransform but no CRS")
    if not has_transform:
        raise InvalidInputError(name, "has a CRS but no geotransform")
    if src.transform.b != 0 or src.transform.d != 0:
        raise InvalidInputError(name, "rotated geotransforms are not supported; warp it first")


def _check_dtype(src: rasterio.DatasetReader, name: str) -> None:
    if len(set(src.dtypes)) > 1:
        raise InvalidInputError(name, f"bands have different data types {sorted(set(src.dtypes))}")
    if src.dtypes[0] in _UNSUPPORTED_DTYPES:
        raise InvalidInputError(name, f"data type {src.dtypes[0]} is not supported")


def _probe_blocks(src: rasterio.DatasetReader, name: str) -> None:
    """Read the first and last block of every band: catches truncated files cheaply."""
    block_h, block_w = src.block_shapes[0]
    last_row = ((src.height - 1) // block_h) * block_h
    last_col = ((src.width - 1) // block_w) * block_w
    windows = {
        Window(0, 0, min(block_w, src.width), min(block_h, src.height)),
        Window(last_col, last_row, src.width - last_col, src.height - last_row),
    }
    try:
        for window in windows:
            data = src.read(window=window)
            src.read_masks(window=window)
            np.asarray(data)
    except RasterioError as e:
        raise InvalidInputError(name, f"truncated or corrupt raster ({_first_line(e)})") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
