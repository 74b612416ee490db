"""``geo-platform ingest --tiers all`` of the 300 MB RGB, end to end, vs three gdal_translate runs.

.venv/bin/python benchmarks/ingest_e2e.py [--quick] [--repeat 3]"""

import os
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import harness as h
from cog_tiers import GDAL_ENV, TIERS, gdal_cog


def steps(data_dir: Path, wall_s: float) -> dict[str, float]:
    """Seconds per step of the newest run (the ingest's one run), and the rest."""
    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as i:
        stats = [s for run in i.get_runs(limit=1) for s in i.get_run_step_stats(run.run_id)]
    split = {s.step_key: s.end_time - s.start_time for s in stats}
    return split | {"outside the steps": wall_s - sum(split.values())}


def main() -> None:
    args = h.options(__doc__, quick=False, repeat=3)  # --quick: a 2000² input, a smoke test
    src = h.raster("rgb", 2000 if args.quick else 10000)
    gdal_env = os.environ | GDAL_ENV
    platform, out = h.DATA / "ingest_e2e", h.DATA / "ingest_e2e_gdal"
    shutil.rmtree(platform, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    env = h.platform_env(data_dir=str(platform)) | gdal_env
    ingest = [h.BIN / "geo-platform", "ingest", "--tiers", "all", "--collection"]
    # The platform exists before the first timed run: instance, catalog, a first item.
    setup = [*ingest, "setup", h.raster("rgb", 256)]
    subprocess.run(setup, env=env, check=True, capture_output=True)

    def gdal_translate() -> h.Run:
        runs = [h.run(gdal_cog(src, t, out / f"{t}.tif"), gdal_env, warm=src) for t in TIERS["rgb"]]
        wall, cpu, others = (sum(r[i] for r in runs) for i in (0, 1, 3))
        return h.Run(wall, cpu, max(r.rss for r in runs), others / 3)

    splits: dict[h.Run, dict[str, float]] = {}

    def geo_platform() -> h.Run:
        for old in (platform / "blobs").glob("*/bench-*"):
            shutil.rmtree(old)  # the previous run's blobs: disk space only
        result = h.run([*ingest, f"bench-{len(splits)}", src], env, warm=src)
        splits[result] = steps(platform, result.wall_s)
        return result

    runs = h.rounds({"3 x gdal_translate": gdal_translate, "ingest": geo_platform}, args.repeat)
    shutil.rmtree(platform)
    shutil.rmtree(out)
    gdal, ours = h.summary(runs["3 x gdal_translate"]), h.summary(runs["ingest"])
    ours["ratio best (<= 1.0)"] = ours["best s"] / gdal["best s"]
    ours["ratio median (<= 1.0)"] = ours["median s"] / gdal["median s"]
    h.table([{"side": "3 x gdal_translate"} | gdal, {"side": "ingest --tiers all"} | ours])
    fastest = splits[min(runs["ingest"], key=lambda r: r.wall_s)]
    print("fastest ingest: " + ", ".join(f"{k} {v:.2f} s" for k, v in fastest.items()))
    figures = {"input": src.name, "gdal_translate x3": gdal, "ingest": ours, "steps": fastest}
    h.write("ingest_e2e", figures, args.quick)


if __name__ == "__main__":
    main()
