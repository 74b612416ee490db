"""A raster bigger than memory: ``geo-platform ingest --tiers analysis`` of a 40,000² gray
(tiled on the way) vs one ``gdal_translate -of COG``: time and the whole command's peak RSS."""

import shutil

import harness as h
from ingest_e2e import versus_gdal

GDAL_ENV = {"GDAL_CACHEMAX": "256", "GDAL_NUM_THREADS": "ALL_CPUS"}  # bounded, as a worker's


def main() -> None:
    # --quick: 6000², tiled with a 2000² threshold in tiles of 2048; --retries: see h.rounds.
    args = h.options(__doc__, quick=False, repeat=1, retries=2)
    src = h.raster("gray", 6000 if args.quick else 40000)
    tiling = {"tiling_threshold_pixels": str(2000**2), "tiling_tile_size": "2048"}
    tiers, settings = ["analysis"], tiling if args.quick else {}
    runs, steps, platform = versus_gdal(src, tiers, GDAL_ENV, args.repeat, args.retries, **settings)
    tiles = len(list((platform / "blobs" / "silver").glob("bench-*/*,tiles/r*.tif")))
    shutil.rmtree(platform)
    rows = h.versus(runs, "<= 1.5")
    rows[1]["peak GB (<= 1.0)"] = rows[1]["peak RSS MB"] / 1024
    h.table(rows)
    figures = {"input": src.name, "tiles": tiles, "env": GDAL_ENV, "sides": rows, "steps": steps}
    h.write("big_raster", figures, args.quick)


if __name__ == "__main__":
    main()
