"""A raster bigger than memory: ``geo-platform ingest --tiers analysis`` of a 40,000² gray
(tiled on the way) vs one ``gdal_translate -of COG``: time and the whole command's peak RSS."""

import harness as h
from ingest_e2e import versus_gdal

GDAL_ENV = {"GDAL_CACHEMAX": "256", "GDAL_NUM_THREADS": "ALL_CPUS"}  # bounded, as a worker's


def main() -> None:
    args = h.options(__doc__, quick=False, repeat=1)  # --quick: 6000², in tiles of 2048
    src = h.raster("gray", 6000 if args.quick else 40000)
    tiling = {"tiling_threshold_pixels": str(2000**2), "tiling_tile_size": "2048"}
    with h.scratch("big_raster") as folder:
        sides = versus_gdal(src, ["analysis"], GDAL_ENV, folder, **tiling if args.quick else {})
        rows = h.versus(h.rounds(sides, args.repeat, args.retries), "<= 1.5")
        tiles = len(list((folder / "blobs" / "silver").glob("bench-*/*,tiles/r*.tif")))
    rows[1]["peak GB (<= 1.0)"] = rows[1]["peak RSS MB"] / 1024
    h.table(rows)
    figures = {"input": src.name, "tiles": tiles, "env": GDAL_ENV, "sides": rows}
    h.write("big_raster", figures, args.smoke)


if __name__ == "__main__":
    main()
