"""``geo-platform ingest --tiers all`` of the 300 MB RGB vs three gdal_translate runs."""

import os
import shutil
from pathlib import Path

import harness as h
from cog_tiers import TIERS


def versus_gdal(src: Path, tiers: list[str], gdal_env: dict, repeat: int, retries=2, **settings):
    """``geo-platform ingest`` of ``src`` on an embedded platform that exists, each run into a
    new collection, vs ``gdal_translate -of COG`` of each tier; the runs, the fastest ingest's
    seconds per step and the platform's folder (the caller removes it)."""
    platform, out = h.DATA / f"{src.stem}_platform", h.DATA / f"{src.stem}_gdal"
    shutil.rmtree(platform, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    env = h.platform_env(data_dir=str(platform), **settings) | gdal_env
    ingest = [h.GEO_PLATFORM, "ingest", "--tiers", "all" if len(tiers) > 1 else tiers[0]]
    h.ingest_setup(env, *ingest[2:])
    steps: dict[h.Run, dict[str, float]] = {}

    def gdal_translate() -> h.Run:
        cogs = [h.gdal_cog(src, t, out / f"{t}.tif") for t in tiers]
        runs = [h.run(cog, os.environ | gdal_env, warm=src) for cog in cogs]
        wall, cpu, others = (sum(r[i] for r in runs) for i in (0, 1, 3))
        return h.Run(wall, cpu, max(r.rss for r in runs), others / len(runs))

    def geo_platform() -> h.Run:
        for old in (platform / "blobs").glob("*/bench-*"):
            shutil.rmtree(old)  # the previous run's blobs: disk space only
        result = h.run([*ingest, "--collection", f"bench-{len(steps)}", src], env, warm=src)
        steps[result] = split = h.step_seconds(env)
        split["outside the steps"] = result.wall_s - sum(split.values())
        return result

    sides = {f"{len(tiers)} x gdal_translate": gdal_translate, " ".join(ingest[1:]): geo_platform}
    runs = h.rounds(sides, repeat, retries)
    shutil.rmtree(out)
    return runs, steps[min(runs[" ".join(ingest[1:])], key=lambda r: r.wall_s)], platform


def main() -> None:
    args = h.options(__doc__, quick=False, repeat=3)  # --quick: a 2000² input
    src = h.raster("rgb", 2000 if args.quick else 10000)
    runs, steps, platform = versus_gdal(src, TIERS["rgb"], h.GDAL_ENV, args.repeat)
    shutil.rmtree(platform)
    h.table(rows := h.versus(runs, "<= 1.0"))
    print("fastest ingest: " + ", ".join(f"{k} {v:.2f} s" for k, v in steps.items()))
    h.write("ingest_e2e", {"input": src.name, "sides": rows, "steps": steps}, args.quick)


if __name__ == "__main__":
    main()
