"""A raster bigger than memory: ``geo-platform ingest --tiers analysis`` of a 40,000²
single-band uint8 (1.6 GB of pixels, tiled on the way) vs one ``gdal_translate -of COG``
DEFLATE run of the same file: time and the whole command's peak memory, side by side.

.venv/bin/python benchmarks/big_raster.py [--quick] [--repeat 1]"""

import os
import shutil
import subprocess
from pathlib import Path

import harness as h
import numpy as np
import rasterio
from cog_tiers import gdal_cog
from rasterio.transform import from_origin
from rasterio.windows import Window

# The same GDAL cache on both sides: bounded, as a worker's must be.
GDAL_ENV = {"GDAL_CACHEMAX": "256", "GDAL_NUM_THREADS": "ALL_CPUS"}
_OCTAVES = [2000, 600, 150, 40]
_BASE = 4000


def gray(size: int) -> Path:
    """A ``size``² single-band uint8, tiled 512 and uncompressed, written a strip at a time:
    a 4,000² field of smooth noise repeated with an offset per repetition, plus sensor
    noise (realistic DEFLATE ratios; cheap enough to generate 40,000² in a few minutes)."""
    path = h.DATA / f"gray_uint8_{size}x{size}.tif"
    if path.exists():
        return path
    rng = np.random.default_rng([h.SEED, size])
    base_size = min(size, _BASE)
    octaves = [(c, rng.random((base_size // c + 2,) * 2)) for c in _OCTAVES]
    axis = np.arange(base_size, dtype=float)
    base = (h._noise(octaves, 0.5, axis, axis) * 230).astype(np.int16)
    profile = dict(driver="GTiff", crs="EPSG:32633", tiled=True, blockxsize=512, blockysize=512)
    profile |= dict(width=size, height=size, count=1, dtype="uint8", BIGTIFF="YES")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial, cols = path.with_suffix(".partial.tif"), np.arange(size)
    shift = (cols // base_size) * 23
    with rasterio.open(partial, "w", transform=from_origin(4e5, 5.6e6, 1.0, 1.0), **profile) as dst:
        for row in range(0, size, 512):
            rows = np.arange(row, min(row + 512, size))
            values = base[(rows % base_size)[:, None], cols % base_size]
            values += shift + (rows // base_size * 11)[:, None]
            noise = np.random.default_rng([h.SEED, row]).integers(0, 7, values.shape, np.int16)
            data = ((values + noise) % 240).astype(np.uint8)[None]
            dst.write(data, window=Window(0, row, size, rows.size))
    partial.rename(path)
    return path


def main() -> None:
    # --quick: 6000², a smoke test; --retries: runs done again when others disturbed them.
    args = h.options(__doc__, quick=False, repeat=1, retries=2)
    size = 6000 if args.quick else 40000
    src = gray(size)
    platform, out = h.DATA / "big_raster", h.DATA / "big_raster_gdal"
    shutil.rmtree(platform, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    gdal_env = os.environ | GDAL_ENV
    # --quick tiles the smaller raster too (threshold 2000²; tiles of 2048).
    tiling = {"tiling_threshold_pixels": str(2000**2), "tiling_tile_size": "2048"}
    env = h.platform_env(data_dir=str(platform), **(tiling if args.quick else {})) | gdal_env
    ingest = [h.BIN / "geo-platform", "ingest", "--tiers", "analysis", "--collection"]
    subprocess.run([*ingest, "setup", h.raster("rgb", 256)], env=env, check=True)

    def gdal_translate() -> h.Run:
        return h.run(gdal_cog(src, "analysis", out / "cog.tif"), gdal_env, warm=src)

    count = iter(range(1000))

    def geo_platform() -> h.Run:
        for old in (platform / "blobs").glob("*/bench-*"):
            shutil.rmtree(old)  # the previous run's blobs: disk space only
        return h.run([*ingest, f"bench-{next(count)}", src], env, warm=src)

    runs = h.rounds(
        {"gdal_translate": gdal_translate, "ingest": geo_platform}, args.repeat, args.retries
    )
    tiles = len(list((platform / "blobs" / "silver").glob("bench-*/*,tiles/r*.tif")))
    shutil.rmtree(platform)
    shutil.rmtree(out)
    gdal, ours = h.summary(runs["gdal_translate"]), h.summary(runs["ingest"])
    ours["time ratio (<= 1.5)"] = ours["best s"] / gdal["best s"]
    ours["peak GB (<= 1.0)"] = ours["peak RSS MB"] / 1024
    h.table([{"side": "gdal_translate -of COG"} | gdal, {"side": "ingest (tiled)"} | ours])
    figures = {"input": src.name, "tiles": tiles, "gdal_translate": gdal, "ingest": ours}
    figures["env"] = GDAL_ENV
    h.write("big_raster", figures, args.quick)


if __name__ == "__main__":
    main()
