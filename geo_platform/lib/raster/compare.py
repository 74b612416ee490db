"""Prove that lossless tiers hold exactly the source's pixels."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.windows import Window


@dataclass(frozen=True)
class Comparison:
    identical: bool
    problems: tuple[str, ...]


def compare_pixels(source: str | Path, copy: str | Path) -> Comparison:
    """Data, masks, nodata, scale/offset and colormap of ``copy`` equal those of ``source``."""
    return compare_copies(source, [copy])[0]


def compare_copies(source: str | Path, copies: Sequence[str | Path]) -> list[Comparison]:
    """:func:`compare_pixels` of each copy, reading the source once for all of them.

    Read in strips of full rows of blocks: a read that spans several blocks is
    decoded on every core (GDAL_NUM_THREADS), and decoding the compressed copies is
    most of the cost.
    """
    with (
        rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"),
        rasterio.open(source) as a,
        ExitStack() as stack,
    ):
        opened = [stack.enter_context(rasterio.open(copy)) for copy in copies]
        problems = [_metadata_problems(a, b) for b in opened]
        pending = [i for i, found in enumerate(problems) if not found]
        read_masks = _has_mask_band(a) or any(_has_mask_band(b) for b in opened)
        strip = max(b.block_shapes[0][0] for b in opened) if opened else a.height
        for row in range(0, a.height, strip):
            if not pending:
                break
            window = Window(0, row, a.width, min(strip, a.height - row))
            data = a.read(window=window)
            mask = a.read_masks(window=window) if read_masks else None
            for i in list(pending):
                b = opened[i]
                if not _same_bits(data, b.read(window=window)):
                    problems[i].append(f"pixel values differ in rows {row}-{row + window.height}")
                elif mask is not None and not _same_bits(mask, b.read_masks(window=window)):
                    problems[i].append(f"mask differs in rows {row}-{row + window.height}")
                else:
                    continue
                pending.remove(i)
    return [Comparison(not found, tuple(found)) for found in problems]


def _metadata_problems(a: rasterio.DatasetReader, b: rasterio.DatasetReader) -> list[str]:
    problems = []
    for attr in ("width", "height", "count", "dtypes", "crs", "transform", "nodata"):
        va, vb = getattr(a, attr), getattr(b, attr)
        if not (va == vb or _both_nan(va, vb)):
            problems.append(f"{attr} differs: {va} vs {vb}")
    if a.scales != b.scales or a.offsets != b.offsets:
        problems.append(f"scale/offset differ: {a.scales}/{a.offsets} vs {b.scales}/{b.offsets}")
    if a.colorinterp and a.colorinterp[0].name == "palette" and a.colormap(1) != b.colormap(1):
        problems.append("colormap differs")
    return problems


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit for bit, as a lossless codec keeps them (NaN payloads included).

    Compared as bytes: 20x faster than ``np.array_equal(..., equal_nan=True)``.
    """
    return (
        a.shape == b.shape
        and a.dtype == b.dtype
        and bool((a.view(np.uint8) == b.view(np.uint8)).all())
    )


def _has_mask_band(ds: rasterio.DatasetReader) -> bool:
    """Whether the dataset's mask is stored apart from its bands' values.

    Otherwise the mask follows from the data and the nodata value (or an alpha
    band), which are compared already: reading it again would prove nothing new.
    """
    return any(
        MaskFlags.per_dataset in flags and MaskFlags.alpha not in flags
        for flags in ds.mask_flag_enums
    )


def _both_nan(a: object, b: object) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
