"""Bad input files, each made the way it arrives in the wild."""

import struct
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window


def truncated_geotiff(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def zero_bytes(target: Path) -> Path:
    target.write_bytes(b"")
    return target


def not_an_image(target: Path) -> Path:
    target.write_text("station,temperature\nA,12.5\n")
    return target


def no_crs(target: Path) -> Path:
    with rasterio.open(
        target,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=1,
        dtype="uint8",
        transform=from_origin(500000, 5500000, 10, 10),
    ) as dst:
        dst.write(np.ones((1, 64, 64), dtype="uint8"))
    return target


def huge_header(target: Path, width: int = 1_000_000, height: int = 1_000_000) -> Path:
    """A 100-byte TIFF whose header claims ``width`` x ``height`` pixels (one lying strip)."""
    entries = [  # (tag, type, count, value); types: 3 SHORT, 4 LONG
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: min-is-black
        (273, 4, 1, 8),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 1),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    target.write_bytes(b"II*\x00" + struct.pack("<I", 16) + b"\x00" * 8 + ifd)
    return target


def sparse_float32(target: Path, size: int) -> Path:
    """A ``size`` x ``size`` float32 GeoTIFF of a few kB: absent blocks read as nodata,
    one block holds data."""
    with rasterio.open(
        target,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=1,
        dtype="float32",
        crs="EPSG:32633",
        transform=from_origin(500000, 5500000, 1, 1),
        nodata=0,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        sparse_ok=True,
    ) as dst:
        dst.write(np.full((1, 512, 512), 42.5, dtype="float32"), window=Window(0, 0, 512, 512))
    return target
