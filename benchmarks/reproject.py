"""Reprojection of a 10,000² gray from UTM 33N to EPSG:4326 (bilinear, a mask outside the
source): the platform's windowed warp vs ``gdalwarp`` with the same grid and warp memory."""

import os

import harness as h
import numpy as np
import rasterio
from big_raster import GDAL_ENV
from rasterio.enums import Resampling

from geo_platform.lib.raster.reproject import plan_warp, write_warped


def warp(src: str, out: str) -> None:
    """Ours, timed in its own process by ``harness.call``."""
    with rasterio.open(src) as ds:
        plan = plan_warp(ds, "EPSG:4326", Resampling.bilinear, name=src, max_pixels=10**10)
    write_warped(src, plan, out, threads="ALL_CPUS")


def main() -> None:
    args = h.options(__doc__, quick=False, repeat=3)  # --quick: 2000²
    src = h.raster("gray", 2000 if args.quick else 10000)
    with rasterio.open(src) as ds:
        plan = plan_warp(ds, "EPSG:4326", Resampling.bilinear, name=src.name, max_pixels=10**10)
    env = os.environ | GDAL_ENV
    with h.scratch("reproject") as out:
        gdalwarp = [
            "gdalwarp", "-q", "-overwrite", *plan.gdalwarp_args(), "-dstalpha", "-wm", "256",
            "-multi", "-wo", "NUM_THREADS=ALL_CPUS", "-co", "TILED=YES", "-co", "BLOCKXSIZE=512",
            "-co", "BLOCKYSIZE=512", "-co", "BIGTIFF=IF_SAFER", str(src), str(out / "gdalwarp.tif"),
        ]  # fmt: skip
        ours = h.call("reproject:warp", src, out / "ours.tif")
        sides = {
            "gdalwarp": lambda: h.run(gdalwarp, env, warm=src),
            "ours": lambda: h.run(ours, env, timed=True, warm=src),
        }
        rows = h.versus(h.rounds(sides, args.repeat, args.retries), "<= 1.0")
        with rasterio.open(out / "ours.tif") as a, rasterio.open(out / "gdalwarp.tif") as b:
            assert (a.transform, a.width, a.height) == (b.transform, b.width, b.height)
            diff = np.abs(a.read(1).astype(np.int16) - b.read(1))
            valid, alpha = a.read_masks(1) > 0, b.read(2) > 0  # gdalwarp's alpha band
    pixels = {
        "output": [plan.width, plan.height], "valid pixels": int(valid.sum()),
        "pixels differing from gdalwarp": int((diff > 0).sum()),
        "largest difference where both are valid": int(diff[valid & alpha].max()),
        "mask pixels differing": int((valid != alpha).sum()),
    }  # fmt: skip
    h.table(rows)
    print(", ".join(f"{name}: {value}" for name, value in pixels.items()))
    h.write("reproject", {"input": src.name, "sides": rows, **pixels}, args.smoke)


if __name__ == "__main__":
    main()
