"""Cut a raster too big to handle whole into tiles, along a deterministic scheme.

Tiles are square windows of ``tile_size`` pixels of the source's own pixel grid,
counted from its top-left corner (the last row and column of tiles are narrower): no
resampling, no gap and no overlap, and the same raster always gives the same tiles.
A tile is read through a VRT window of the source (what ``gdal_translate -srcwin`` would
read), so that every tier, check and statistic of a tile reads only its window.

Names: tile ``r0003_c0001`` of ``landsat/big.tif`` is item ``big!r0003_c0001`` (``!``
never appears unescaped in an item id) and its tiers are stored under
``landsat/big,tiles/`` (``,`` never appears in a bronze key, so no other raster's
outputs can be there).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import rasterio
import rasterio.shutil

from geo_platform.lib.partition_keys import output_stem
from geo_platform.lib.raster.tiers import VERSION_CHARS, Tier

TILES_FOLDER_SUFFIX = ",tiles/"
MOSAIC_NAME = "mosaic"
_TILE_VERSION = re.compile(
    rf"(r\d{{4}}_c\d{{4}})\.({'|'.join(t.value for t in Tier)})\.[0-9a-f]{{{VERSION_CHARS}}}\.tif"
)
_MOSAIC_VERSION = re.compile(rf"{MOSAIC_NAME}\.[0-9a-f]{{{VERSION_CHARS}}}\.vrt")


@dataclass(frozen=True, order=True)
class Tile:
    """One window of the source: rows and columns of pixels, and its place in the grid."""

    row: int
    col: int
    row_off: int
    col_off: int
    height: int
    width: int

    @property
    def name(self) -> str:
        return f"r{self.row:04d}_c{self.col:04d}"

    @property
    def window(self) -> list[int]:
        """``[col_off, row_off, width, height]``, as ``gdal_translate -srcwin`` takes it."""
        return [self.col_off, self.row_off, self.width, self.height]


def needs_tiling(width: int, height: int, threshold_pixels: int) -> bool:
    return width * height > threshold_pixels


def tile_grid(width: int, height: int, tile_size: int) -> list[Tile]:
    """Every tile of a ``width`` x ``height`` raster, row by row."""
    rows, cols = math.ceil(height / tile_size), math.ceil(width / tile_size)
    if rows > 9999 or cols > 9999:
        raise ValueError(f"{cols} x {rows} tiles: over the 9,999 a tile name can count")
    return [
        Tile(
            row=r,
            col=c,
            row_off=r * tile_size,
            col_off=c * tile_size,
            height=min(tile_size, height - r * tile_size),
            width=min(tile_size, width - c * tile_size),
        )
        for r in range(rows)
        for c in range(cols)
    ]


def tile_item_id(raster_item_id: str, tile: Tile) -> str:
    return f"{raster_item_id}!{tile.name}"


def tiles_prefix(blob_key: str) -> str:
    """The folder (in each tier's container) holding every tile version of a raster."""
    return f"{output_stem(blob_key)}{TILES_FOLDER_SUFFIX}"


def tile_file_name(tile: Tile, tier: Tier, sha256: str) -> str:
    """Named after the tile's own content: a new version never overwrites an old one."""
    return f"{tile.name}.{tier.value}.{sha256[:VERSION_CHARS]}.tif"


def mosaic_file_name(sha256: str) -> str:
    return f"{MOSAIC_NAME}.{sha256[:VERSION_CHARS]}.vrt"


def is_tile_output(blob_key: str, candidate: str) -> bool:
    """Whether ``candidate`` is a tile version or a mosaic version of ``blob_key``."""
    prefix = tiles_prefix(blob_key)
    if not candidate.startswith(prefix):
        return False
    rest = candidate[len(prefix) :]
    return bool(_TILE_VERSION.fullmatch(rest) or _MOSAIC_VERSION.fullmatch(rest))


def tile_tier(file_name: str) -> Tier | None:
    found = _TILE_VERSION.fullmatch(file_name)
    return Tier(found.group(2)) if found else None


def window_vrt(source_vrt: Path, tile: Tile, out_path: Path) -> Path:
    """A VRT of the tile's window of the source: ``source_vrt`` (a plain VRT copy of the
    source, from ``source_as_vrt``) with its size, origin and every source rectangle
    narrowed to the window. Bands, nodata, mask, colormap and scales stay as they are."""
    tree = ET.parse(source_vrt)
    root = tree.getroot()
    root.set("rasterXSize", str(tile.width))
    root.set("rasterYSize", str(tile.height))
    geo = root.find("GeoTransform")
    assert geo is not None and geo.text is not None
    a = [float(v) for v in geo.text.split(",")]
    a[0] = a[0] + tile.col_off * a[1] + tile.row_off * a[2]
    a[3] = a[3] + tile.col_off * a[4] + tile.row_off * a[5]
    geo.text = ", ".join(repr(v) for v in a)
    for source in root.iter():
        src_rect, dst_rect = source.find("SrcRect"), source.find("DstRect")
        if src_rect is None or dst_rect is None:
            continue
        _check_whole(src_rect, dst_rect, source_vrt)
        src_rect.attrib.update(
            xOff=str(tile.col_off), yOff=str(tile.row_off),
            xSize=str(tile.width), ySize=str(tile.height),
        )  # fmt: skip
        dst_rect.attrib.update(xOff="0", yOff="0", xSize=str(tile.width), ySize=str(tile.height))
    # Overviews of the whole source would not match the window.
    for band in root.iter("VRTRasterBand"):
        for overview in band.findall("Overview"):
            band.remove(overview)
    tree.write(out_path)
    return out_path


def source_as_vrt(source: str | Path, out_path: Path) -> Path:
    """A plain VRT of the source (``gdal_translate -of VRT``), the template of every
    tile's window; its sources name the source by its absolute path."""
    with rasterio.open(source) as src:
        rasterio.shutil.copy(src, out_path, driver="VRT")
    tree = ET.parse(out_path)
    for name in tree.getroot().iter("SourceFilename"):
        if name.get("relativeToVRT") == "1" and name.text:
            name.text = str((out_path.parent / name.text).resolve())
            name.set("relativeToVRT", "0")
    tree.write(out_path)
    return out_path


def _check_whole(src_rect: ET.Element, dst_rect: ET.Element, path: Path) -> None:
    """The template's sources must each cover the whole raster one to one."""
    if (
        src_rect.attrib != dst_rect.attrib
        or src_rect.get("xOff") != "0"
        or src_rect.get("yOff") != "0"
    ):
        raise ValueError(f"{path}: a source does not map the raster one to one")
