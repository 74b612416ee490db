"""Deterministic sample rasters for the demo and tests: smooth fields with texture,
so that compression behaves as it does on real imagery."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin


def _terrain(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype("float32")
    field = np.zeros((height, width), dtype="float32")
    for octave in range(1, 6):
        fx, fy, phase = rng.uniform(0.5, 3.0, 3) * octave
        field += (
            np.sin(x / width * fx * np.pi * 2 + phase)
            * np.cos(y / height * fy * np.pi * 2)
            / octave
        )
    field += rng.normal(0, 0.02, size=field.shape).astype("float32")
    return (field - field.min()) / (field.max() - field.min())


def write_rgb_sample(path: Path, size: int = 1024, seed: int = 1) -> Path:
    """A 3-band uint8 'orthophoto' in UTM 33N (EPSG:32633)."""
    t = _terrain(size, size, seed)
    rgb = np.stack([t * 180 + 40, (1 - t) * 120 + 60 + t * 60, (1 - t) * 200 + 30]).clip(0, 255)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500000, 5500000, 0.5, 0.5),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
        "photometric": "RGB",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgb.astype("uint8"))
        dst.update_tags(TIFFTAG_DATETIME="2024:06:01 10:30:00")
    return path


def write_dem_sample(path: Path, size: int = 768, seed: int = 2) -> Path:
    """A float32 elevation model in EPSG:4326 with a nodata corner (-9999)."""
    dem = (_terrain(size, size, seed) * 2500 + 100).astype("float32")
    dem[: size // 6, : size // 6] = -9999
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "float32",
        "crs": "EPSG:4326",
        "transform": from_origin(10.0, 47.0, 0.0005, 0.0005),
        "nodata": -9999,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dem, 1)
        dst.update_tags(TIFFTAG_DATETIME="2023:09:15 00:00:00")
    return path
