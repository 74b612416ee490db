"""What a GIS user wants to see of a written COG, in the words of the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rasterio
from rasterio.enums import MaskFlags


def human_bytes(size: float) -> str:
    """``1234567`` -> ``1.2 MB`` (decimal units, as storage is billed)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def size_vs_source(size: int, source_size: int) -> str:
    """The tier's size as a share of the source's: ``38 % of the source``."""
    share = size / source_size * 100 if source_size else 0.0
    return f"{share:.0f} % of the source" if share >= 1 else f"{share:.2f} % of the source"


def describe_cog(path: str | Path, source_size: int, crs: str) -> dict[str, Any]:
    """Sizes (bytes and human), size versus the source, CRS, dimensions, data type,
    compression, block size, overview levels and how invalid pixels are marked.

    ``crs``: as validation named it (identifying a CRS in the EPSG database anew costs
    ~0.3 s for one without an EPSG code).
    """
    size = Path(path).stat().st_size
    with rasterio.open(path) as src:
        block_h, block_w = src.block_shapes[0]
        factors = src.overviews(1)
        flags = src.mask_flag_enums[0]
        if MaskFlags.per_dataset in flags:
            mask = "internal mask" + (" (alpha)" if MaskFlags.alpha in flags else "")
        elif MaskFlags.nodata in flags:
            mask = f"nodata {src.nodata:g}"
        else:
            mask = "none (every pixel valid)"
        compression = src.compression.value if src.compression else "none"
        return {
            "size": human_bytes(size),
            "size_bytes": size,
            "source_size": human_bytes(source_size),
            "size_vs_source": size_vs_source(size, source_size),
            "crs": crs,
            "dimensions": f"{src.width} x {src.height} px, {src.count} band(s)",
            "data_type": src.dtypes[0],
            "compression": compression,
            "block_size": f"{block_w} x {block_h}",
            "overview_levels": ", ".join(f"1/{f}" for f in factors) or "none (fits one block)",
            "mask": mask,
        }
