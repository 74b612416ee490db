"""COG tiers: ``write_cog_tiers`` vs ``gdal_translate -of COG``, tier by tier and all at once."""

import os
import shutil
import subprocess
from pathlib import Path

import harness as h
import rasterio

TIERS = {"rgb": ["visualization", "analysis", "archive"], "dem": ["analysis", "archive"]}


def write(src: str, out: str, tiers: str) -> None:
    """Ours, timed in its own process by ``harness.call``."""
    from geo_platform.lib.raster.cog import Tier, write_cog_tiers

    write_cog_tiers(src, [Tier(t) for t in tiers.split(",")], out, threads="ALL_CPUS")


def side(src: Path, tiers: list[str], folder: Path, ours: bool):
    """One write of ``tiers`` (gdal_translate: one tier) into a folder of its own."""
    out = folder / f"{src.stem}-{'+'.join(tiers)}-{ours}"
    cmd = h.gdal_cog(src, tiers[0], out / "cog.tif")
    cmd = h.call("cog_tiers:write", src, out, ",".join(tiers)) if ours else cmd

    def once() -> h.Run:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        os.sync()  # earlier outputs are not written back during this run
        return h.run(cmd, os.environ | h.GDAL_ENV, timed=ours, warm=src)

    return once


def main() -> None:
    args = h.options(__doc__, quick=False, repeat=3)  # --quick: 2000² inputs
    sizes = {"rgb": 2000, "dem": 2000} if args.quick else {"rgb": 10000, "dem": 8000}
    sides = {}
    with h.scratch("cog_tiers") as out:
        for kind, size in sizes.items():
            src = h.raster(kind, size)
            for tier in TIERS[kind]:
                sides[f"{kind} {tier} gdal_translate"] = side(src, [tier], out, False)
                sides[f"{kind} {tier} ours"] = side(src, [tier], out, True)
            sides[f"{kind} all tiers ours"] = side(src, TIERS[kind], out, True)
        rows = h.versus(h.rounds(sides, args.repeat, args.retries))
    runs = {row.pop("side"): row for row in rows}
    single, together = [], []
    for kind in sizes:
        for tier in TIERS[kind]:
            gdal, ours = runs[f"{kind} {tier} gdal_translate"], runs[f"{kind} {tier} ours"]
            single.append({"input": f"{kind} {tier}", "side": "gdal_translate"} | gdal)
            single.append({"input": f"{kind} {tier}", "side": "ours"} | ours)
            single[-1]["throughput (>= 0.9)"] = gdal["best s"] / ours["best s"]
            single[-1]["peak RSS (<= 1.5)"] = ours["peak RSS MB"] / gdal["peak RSS MB"]
        gdal_s = sum(runs[f"{kind} {tier} gdal_translate"]["best s"] for tier in TIERS[kind])
        ours = {"input": kind, "gdal_translate s, sum": gdal_s} | runs[f"{kind} all tiers ours"]
        together.append(ours | {"ratio (<= 0.7)": ours["best s"] / gdal_s})
    print("\nOne tier (ratios: gdal_translate's best time / ours, our worst peak RSS / its)")
    h.table(single)
    print("\nAll tiers of one source in one call vs the sum of single-tier gdal_translate runs")
    h.table(together)
    gdal = subprocess.check_output(["gdal_translate", "--version"], text=True).strip()
    figures = {"gdal_translate": gdal, "rasterio's GDAL": rasterio.__gdal_version__, "sizes": sizes}
    figures |= {"repeat": args.repeat, "single tier": single, "all tiers": together}
    h.write("cog_tiers", figures, args.smoke)


if __name__ == "__main__":
    main()
