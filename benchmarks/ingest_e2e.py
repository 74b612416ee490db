"""Benchmark: ``geo-platform ingest --tiers all`` end to end against three gdal_translate runs.

Usage::

    .venv/bin/python benchmarks/ingest_e2e.py [--quick] [--repeat N]

The issue's yardstick: ingesting the ~300 MB 3-band uint8 input with all three tiers
(copy into bronze, a Dagster run on a fresh embedded instance, validation, tiers,
STAC item, catalog, collection summary) must take no longer than writing the three
tiers with three separate ``gdal_translate -of COG`` runs. Both are timed as whole
commands, start-up included, with the same GDAL_CACHEMAX and thread settings, in one
run of this script. Results: stdout and ``benchmarks/results/ingest_e2e.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cog_tiers import (
    ensure_input,
    gdal_args,
    input_specs,
    run_child,
    wait_until_quiet,
    warm_up,
)

from geo_platform.lib.raster.cog import creation_options, overview_resampling
from geo_platform.lib.raster.tiers import Tier

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "ingest_e2e.json"


def gdal_translate_all(src: Path, out: Path, env: dict[str, str]) -> tuple[float, float]:
    """Three gdal_translate runs, one per tier: (total seconds, worst peak RSS MB)."""
    with rasterio.open(src) as ds:
        dtype, resampling = ds.dtypes[0], overview_resampling(ds).name.upper()
    seconds, rss = 0.0, 0.0
    for tier in Tier:
        args = gdal_args(creation_options(tier, dtype), resampling)
        sample = run_child(
            ["gdal_translate", "-q", "-of", "COG", *args, str(src), str(out / f"{tier}.tif")], env
        )
        seconds += sample.wall_s
        rss = max(rss, sample.maxrss_mb)
    return seconds, rss


def ingest_all(src: Path, data_dir: Path, env: dict[str, str]) -> tuple[float, float]:
    """``geo-platform ingest SRC --tiers all`` on a fresh embedded platform."""
    shutil.rmtree(data_dir, ignore_errors=True)
    child_env = dict(env, GEO_PLATFORM_DATA_DIR=str(data_dir), GEO_PLATFORM_PROFILE="embedded")
    child_env.pop("DAGSTER_HOME", None)
    cli = str(ROOT / ".venv" / "bin" / "geo-platform")
    sample = run_child(
        [cli, "ingest", str(src), "--collection", "bench", "--tiers", "all"], child_env
    )
    return sample.wall_s, sample.maxrss_mb


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small input, a smoke test")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cachemax", type=int, default=512, help="GDAL_CACHEMAX in MB")
    parser.add_argument("--max-wait", type=float, default=600, help="seconds to wait for quiet")
    args = parser.parse_args(argv)

    spec = next(s for s in input_specs(args.quick) if s.count == 3)
    src = ensure_input(spec)
    env = dict(
        os.environ,
        GDAL_CACHEMAX=str(args.cachemax),
        GDAL_NUM_THREADS="ALL_CPUS",
    )
    ours, theirs, rss_ours, rss_theirs = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="ingest-e2e-", dir=HERE / ".data") as tmp:
        for _ in range(args.repeat):
            for side in ("gdal_translate", "ingest"):
                wait_until_quiet(args.max_wait)
                warm_up(src)
                if side == "gdal_translate":
                    out = Path(tmp) / "gdal"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    seconds, rss = gdal_translate_all(src, out, env)
                    theirs.append(seconds)
                    rss_theirs.append(rss)
                else:
                    seconds, rss = ingest_all(src, Path(tmp) / "platform", env)
                    ours.append(seconds)
                    rss_ours.append(rss)
    figures = {
        "input": {"path": str(src.relative_to(ROOT)), "bytes": src.stat().st_size},
        "settings": {
            "GDAL_CACHEMAX_MB": args.cachemax,
            "threads": "ALL_CPUS",
            "repeat": args.repeat,
        },
        "gdal_translate_x3_s": {"best": min(theirs), "median": statistics.median(theirs)},
        "ingest_all_tiers_s": {"best": min(ours), "median": statistics.median(ours)},
        "ratio_best": min(ours) / min(theirs),
        "ratio_median": statistics.median(ours) / statistics.median(theirs),
        "peak_rss_mb": {"gdal_translate": max(rss_theirs), "ingest": max(rss_ours)},
        "target": "ingest <= 1.0 x three gdal_translate runs",
    }
    print(f"input: {figures['input']['path']} ({figures['input']['bytes'] / 1e6:.0f} MB)")
    for label, times in (("gdal_translate x3", theirs), ("geo-platform ingest", ours)):
        print(f"{label}:  best {min(times):6.1f} s  median {statistics.median(times):6.1f} s")
    print(
        f"ratio ingest / gdal_translate x3: best {figures['ratio_best']:.2f}, "
        f"median {figures['ratio_median']:.2f} (target <= 1.0)"
    )
    print(f"peak RSS: gdal_translate {max(rss_theirs):.0f} MB, ingest {max(rss_ours):.0f} MB")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
