"""Vector tiles: tile arithmetic shared by both warehouses, and PMTiles archives.

The warehouses make the tiles themselves (``ST_AsMVT``: PostGIS on production, DuckDB
spatial on embedded); this module says which tiles a zoom needs, how much to simplify
there, and writes the gzipped tiles into one PMTiles archive.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

# Web Mercator's half width in metres, and the latitude where its square world ends.
HALF_WORLD = 20037508.342789244
MAX_LATITUDE = 85.0511287798066
EXTENT = 4096  # MVT coordinates per tile side
BUFFER = 64  # MVT coordinates kept beyond each tile edge, so strokes join across tiles


@dataclass(frozen=True)
class TileOptions:
    min_zoom: int = 0
    max_zoom: int = 10
    extent: int = EXTENT
    buffer: int = BUFFER
    layer: str = "layer"

    def __post_init__(self) -> None:
        if not 0 <= self.min_zoom <= self.max_zoom <= 22:
            raise ValueError(
                f"zoom range {self.min_zoom}-{self.max_zoom}: need 0 <= min <= max <= 22"
            )


def tile_size(zoom: int) -> float:
    """Width of one tile at ``zoom`` in Web Mercator metres."""
    return 2 * HALF_WORLD / (1 << zoom)


def simplify_tolerance(zoom: int, extent: int = EXTENT) -> float:
    """One MVT coordinate unit at ``zoom``: detail finer than this cannot be drawn."""
    return tile_size(zoom) / extent


@dataclass
class TileSummary:
    tiles_per_zoom: dict[int, int] = field(default_factory=dict)
    bytes: int = 0

    @property
    def tiles(self) -> int:
        return sum(self.tiles_per_zoom.values())


def write_pmtiles(
    path: Path,
    tiles: Iterable[tuple[int, int, int, bytes]],
    *,
    bounds: tuple[float, float, float, float],
    metadata: dict,
) -> TileSummary:
    """Write ``(z, x, y, mvt)`` tiles, in any order, as one gzipped PMTiles archive.

    Tiles are sorted by PMTiles tile id first, which keeps the archive clustered.
    Empty tiles are left out. Raises ``ValueError`` when there is no tile at all.
    """
    entries = sorted(
        ((zxy_to_tileid(z, x, y), z, data) for z, x, y, data in tiles if data),
        key=lambda e: e[0],
    )
    if not entries:
        raise ValueError("no tile has any feature")
    summary = TileSummary()
    west, south, east, north = bounds
    south, north = max(south, -MAX_LATITUDE), min(north, MAX_LATITUDE)
    zooms = sorted({z for _, z, _ in entries})
    with open(path, "wb") as f:
        writer = Writer(f)
        for tile_id, z, data in entries:
            compressed = gzip.compress(data, mtime=0)
            writer.write_tile(tile_id, compressed)
            summary.tiles_per_zoom[z] = summary.tiles_per_zoom.get(z, 0) + 1
            summary.bytes += len(compressed)
        writer.finalize(
            {
                "tile_compression": Compression.GZIP,
                "tile_type": TileType.MVT,
                "min_lon_e7": int(west * 1e7),
                "min_lat_e7": int(south * 1e7),
                "max_lon_e7": int(east * 1e7),
                "max_lat_e7": int(north * 1e7),
                "center_zoom": zooms[0],
                "center_lon_e7": int((west + east) / 2 * 1e7),
                "center_lat_e7": int((south + north) / 2 * 1e7),
            },
            metadata,
        )
    return summary


def tile_bounds_lonlat(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) of an XYZ tile in degrees, for tests and messages."""
    n = 1 << z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return (x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y))
