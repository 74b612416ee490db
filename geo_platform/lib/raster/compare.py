"""Prove a lossless tier holds exactly the source's pixels, block by block."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio


@dataclass(frozen=True)
class Comparison:
    identical: bool
    problems: tuple[str, ...]


def compare_pixels(source: str | Path, copy: str | Path) -> Comparison:
    """Data, masks, nodata, scale/offset and colormap of ``copy`` equal those of ``source``."""
    problems: list[str] = []
    # Decoding the compressed copy is most of the cost: let GDAL use every core.
    with (
        rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"),
        rasterio.open(source) as a,
        rasterio.open(copy) as b,
    ):
        for attr in ("width", "height", "count", "dtypes", "crs", "transform", "nodata"):
            va, vb = getattr(a, attr), getattr(b, attr)
            if not (va == vb or _both_nan(va, vb)):
                problems.append(f"{attr} differs: {va} vs {vb}")
        if a.scales != b.scales or a.offsets != b.offsets:
            problems.append(
                f"scale/offset differ: {a.scales}/{a.offsets} vs {b.scales}/{b.offsets}"
            )
        if a.colorinterp and a.colorinterp[0].name == "palette" and a.colormap(1) != b.colormap(1):
            problems.append("colormap differs")
        if problems:
            return Comparison(False, tuple(problems))
        for _, window in b.block_windows(1):
            if not np.array_equal(a.read(window=window), b.read(window=window), equal_nan=True):
                problems.append(f"pixel values differ in window {window}")
                break
            if not np.array_equal(a.read_masks(window=window), b.read_masks(window=window)):
                problems.append(f"mask differs in window {window}")
                break
    return Comparison(not problems, tuple(problems))


def _both_nan(a: object, b: object) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
