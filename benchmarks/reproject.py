"""Reprojection of a 10,000² single-band uint8 (UTM 33N to EPSG:4326, bilinear, a mask
for the area outside the source): the platform's windowed warp (``write_warped``) vs
``gdalwarp`` with the same grid, resampling and warp memory, side by side.

.venv/bin/python benchmarks/reproject.py [--quick] [--repeat 3]"""

import os
import shutil

import harness as h
import numpy as np
import rasterio
from big_raster import GDAL_ENV, gray
from rasterio.enums import Resampling

from geo_platform.lib.raster.reproject import plan_warp, write_warped

TARGET = "EPSG:4326"


def warp(src: str, out: str) -> None:
    """Ours, timed in its own process by ``harness.call``."""
    with rasterio.open(src) as ds:
        plan = plan_warp(ds, TARGET, Resampling.bilinear, name=src, max_pixels=10**10)
    write_warped(src, plan, out, threads="ALL_CPUS")


def main() -> None:
    # --quick: 2000², a smoke test; --retries: runs done again when others disturbed them.
    args = h.options(__doc__, quick=False, repeat=3, retries=2)
    src = gray(2000 if args.quick else 10000)
    with rasterio.open(src) as ds:
        plan = plan_warp(ds, TARGET, Resampling.bilinear, name=src.name, max_pixels=10**10)
    out = h.DATA / "reproject_out"
    out.mkdir(parents=True, exist_ok=True)
    env = os.environ | GDAL_ENV
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
    runs = {name: h.summary(r) for name, r in h.rounds(sides, args.repeat, args.retries).items()}
    with rasterio.open(out / "ours.tif") as a, rasterio.open(out / "gdalwarp.tif") as b:
        same_grid = (a.transform, a.width, a.height) == (b.transform, b.width, b.height)
        ours_px, theirs = a.read(1).astype(np.int16), b.read(1).astype(np.int16)
        both = (a.read_masks(1) > 0) & (b.read(2) > 0)  # gdalwarp's alpha band
        differing = int((ours_px != theirs).sum()) if same_grid else -1
        largest = int(np.abs(ours_px - theirs)[both].max()) if same_grid else -1
        mask_differs = int(((a.read_masks(1) > 0) != (b.read(2) > 0)).sum())
        valid = int((a.read_masks(1) > 0).sum())
    shutil.rmtree(out)
    runs["ours"]["time ratio (<= 1.0)"] = runs["ours"]["best s"] / runs["gdalwarp"]["best s"]
    h.table([{"side": name} | figures for name, figures in runs.items()])
    print(f"output {plan.width} x {plan.height}; pixels differing from gdalwarp's: {differing:,}")
    print(f"largest difference where both are valid: {largest}; mask differs: {mask_differs:,}")
    figures = {"input": src.name, "output": [plan.width, plan.height], **runs}
    figures["pixels differing from gdalwarp"] = differing
    figures["valid pixels"] = valid
    figures["largest difference where both are valid"] = largest
    figures["mask pixels differing"] = mask_differs
    h.write("reproject", figures, args.quick)


if __name__ == "__main__":
    main()
