"""The mosaic of a tiled raster: one GDAL VRT over its tiles, opened as the whole raster.

Built from a plain VRT of the source (``tiling.source_as_vrt``): the same size, CRS,
geotransform, bands, nodata, colormap, scales and mask; each band's source (and the mask
band's) is replaced by one source per tile, each placed at the tile's window. Tile files
are named relative to the VRT, which is stored beside them: it opens wherever the tiles
are (a local folder, ``/vsiaz/``, a download of the folder), in GDAL and in QGIS.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from geo_platform.lib.raster.tiling import Tile

MEDIA_TYPE = "application/x-gdal-vrt"
_SOURCE_TAGS = ("SimpleSource", "ComplexSource", "AveragedSource", "KernelFilteredSource")


def mosaic_vrt(template: Path, tiles: Sequence[tuple[Tile, str]], out_path: Path) -> Path:
    """Write the mosaic of ``tiles`` (each with its file name, relative to ``out_path``)."""
    tree = ET.parse(template)
    root = tree.getroot()
    for band in [*root.iter("VRTRasterBand")]:
        sources = [child for child in band if child.tag in _SOURCE_TAGS]
        if not sources:
            continue
        if len(sources) != 1:
            raise ValueError(f"{template}: a band with {len(sources)} sources")
        (source,) = sources
        at = list(band).index(source)
        band.remove(source)
        for offset, (tile, file_name) in enumerate(tiles):
            band.insert(at + offset, _tile_source(source, tile, file_name))
        for overview in band.findall("Overview"):
            band.remove(overview)
    ET.indent(tree)
    tree.write(out_path, encoding="unicode")
    return out_path


def _tile_source(template: ET.Element, tile: Tile, file_name: str) -> ET.Element:
    source = copy.deepcopy(template)
    name = source.find("SourceFilename")
    assert name is not None
    name.text = file_name
    name.set("relativeToVRT", "1")
    # Describes the whole source file; GDAL reads the tile's own when it opens it.
    for properties in source.findall("SourceProperties"):
        source.remove(properties)
    size = {"xSize": str(tile.width), "ySize": str(tile.height)}
    src_rect, dst_rect = source.find("SrcRect"), source.find("DstRect")
    assert src_rect is not None and dst_rect is not None
    src_rect.attrib.update(xOff="0", yOff="0", **size)
    dst_rect.attrib.update(xOff=str(tile.col_off), yOff=str(tile.row_off), **size)
    return source
