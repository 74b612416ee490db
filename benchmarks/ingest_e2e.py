"""``geo-platform ingest --tiers all`` of the 300 MB RGB vs three gdal_translate runs."""

import itertools
import os
import shutil
from pathlib import Path

import harness as h
from cog_tiers import TIERS


def versus_gdal(src: Path, tiers: list[str], gdal_env: dict, folder: Path, **settings) -> dict:
    """``geo-platform ingest`` of ``src`` on an embedded platform in ``folder`` that exists,
    each run into a new collection (the fastest split into its steps and the rest), vs
    ``gdal_translate -of COG`` of each tier: the sides for ``harness.rounds``."""
    env = h.platform_env("embedded", folder, **settings) | gdal_env
    ingest = [h.GEO_PLATFORM, "ingest", "--tiers", "all" if len(tiers) > 1 else tiers[0]]
    h.ingest_setup(env, *ingest[2:])
    collections = itertools.count()

    def gdal_translate() -> h.Run:
        cogs = [h.gdal_cog(src, t, folder / f"gdal_{t}.tif") for t in tiers]
        runs = [h.run(cog, os.environ | gdal_env, warm=src) for cog in cogs]
        wall, cpu, others = (sum(r[i] for r in runs) for i in (0, 1, 3))
        return h.Run(wall, cpu, max(r.rss for r in runs), others / len(runs))

    def geo_platform() -> h.Run:
        for old in (folder / "blobs").glob("*/bench-*"):
            shutil.rmtree(old)  # the previous run's blobs: disk space only
        collection = f"bench-{next(collections)}"
        return h.with_steps(h.run([*ingest, "--collection", collection, src], env, warm=src), env)

    return {f"{len(tiers)} x gdal_translate": gdal_translate, " ".join(ingest[1:]): geo_platform}


def main() -> None:
    args = h.options(__doc__, quick=False, repeat=3)  # --quick: a 2000² input
    src = h.raster("rgb", 2000 if args.quick else 10000)
    with h.scratch("ingest_e2e") as folder:
        sides = versus_gdal(src, TIERS["rgb"], h.GDAL_ENV, folder)
        rows = h.versus(h.rounds(sides, args.repeat, args.retries), "<= 1.0")
    h.table(rows)
    h.write("ingest_e2e", {"input": src.name, "sides": rows}, args.smoke)


if __name__ == "__main__":
    main()
