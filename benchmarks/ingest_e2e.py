"""Benchmark: ``geo-platform ingest --tiers all`` end to end against three gdal_translate runs.

Usage::

    .venv/bin/python benchmarks/ingest_e2e.py [--quick] [--repeat N]

The issue's yardstick: ingesting the ~300 MB 3-band uint8 input with all three tiers
(copy into bronze, a Dagster run on a fresh embedded instance, validation, tiers,
STAC item, catalog, collection summary) must take no longer than writing the three
tiers with three separate ``gdal_translate -of COG`` runs. Both are timed as whole
commands, start-up included, with the same GDAL_CACHEMAX and thread settings, in one
run of this script. Results: stdout and ``benchmarks/results/ingest_e2e.json``.

``ingest`` runs on a new platform (an empty data directory: the first command also
creates the Dagster instance and the catalog), ``ingest-existing`` on a platform that
already exists, as any ingest after the first finds it (prepared, untimed, by ingesting
the small quick-test raster into another collection). Each timed ingest is split into
its Dagster steps from the instance's event log; "outside" is the rest: interpreter
and imports, instance, copy into bronze, run bookkeeping.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
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


def ingest_all(
    src: Path, data_dir: Path, env: dict[str, str], warmup: Path | None = None
) -> tuple[float, float, dict[str, float]]:
    """``geo-platform ingest SRC --tiers all``: (seconds, peak RSS MB, seconds per stage).

    A new platform in ``data_dir``; with ``warmup``, that file is ingested first (untimed)
    so that the timed command finds the instance and the catalog in place.
    """
    shutil.rmtree(data_dir, ignore_errors=True)
    child_env = dict(env, GEO_PLATFORM_DATA_DIR=str(data_dir), GEO_PLATFORM_PROFILE="embedded")
    child_env.pop("DAGSTER_HOME", None)
    cli = str(ROOT / ".venv" / "bin" / "geo-platform")
    if warmup is not None:
        argv = [cli, "ingest", str(warmup), "--collection", "warmup", "--tiers", "all"]
        subprocess.run(argv, env=child_env, check=True, capture_output=True)
        wait_until_quiet(60)
        warm_up(src)
    sample = run_child(
        [cli, "ingest", str(src), "--collection", "bench", "--tiers", "all"], child_env
    )
    return sample.wall_s, sample.maxrss_mb, _stages(data_dir, sample.wall_s)


def _stages(data_dir: Path, wall_s: float) -> dict[str, float]:
    """Seconds per step of the bench collection's runs, from the instance's event log."""
    import dagster as dg

    from geo_platform.settings import PlatformSettings

    home = PlatformSettings(data_dir=data_dir).dagster_home
    stages: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()[:2]  # newest first: the summary run, then the ingest run
        for run in runs:
            started: dict[str, float] = {}
            for record in instance.get_records_for_run(run.run_id).records:
                entry = record.event_log_entry
                event = entry.dagster_event
                if event is None or entry.step_key is None:
                    continue
                if event.event_type_value == "STEP_START":
                    started[entry.step_key] = entry.timestamp
                elif event.event_type_value == "STEP_SUCCESS":
                    stages[entry.step_key] = entry.timestamp - started[entry.step_key]
    stages["outside the steps"] = wall_s - sum(stages.values())
    return stages


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
    warmup = ensure_input(next(s for s in input_specs(True) if s.count == 3))
    sides = ("gdal_translate", "ingest", "ingest-existing")
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    rss: dict[str, list[float]] = {side: [] for side in sides}
    stages: dict[str, list[dict[str, float]]] = {side: [] for side in sides[1:]}
    with tempfile.TemporaryDirectory(prefix="ingest-e2e-", dir=HERE / ".data") as tmp:
        for _ in range(args.repeat):
            for side in sides:
                wait_until_quiet(args.max_wait)
                warm_up(src)
                if side == "gdal_translate":
                    out = Path(tmp) / "gdal"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    wall, peak = gdal_translate_all(src, out, env)
                else:
                    prepared = warmup if side == "ingest-existing" else None
                    wall, peak, split = ingest_all(src, Path(tmp) / "platform", env, prepared)
                    stages[side].append(split)
                seconds[side].append(wall)
                rss[side].append(peak)
    reference = seconds["gdal_translate"]
    figures = {
        "input": {"path": str(src.relative_to(ROOT)), "bytes": src.stat().st_size},
        "settings": {
            "GDAL_CACHEMAX_MB": args.cachemax,
            "threads": "ALL_CPUS",
            "repeat": args.repeat,
        },
        "seconds": {
            side: {"best": min(times), "median": statistics.median(times), "all": times}
            for side, times in seconds.items()
        },
        "ratios": {
            side: {
                "best": min(seconds[side]) / min(reference),
                "median": statistics.median(seconds[side]) / statistics.median(reference),
            }
            for side in sides[1:]
        },
        "stages_of_best_run": {
            side: stages[side][seconds[side].index(min(seconds[side]))] for side in sides[1:]
        },
        "peak_rss_mb": {side: max(values) for side, values in rss.items()},
        "target": "ingest <= 1.0 x three gdal_translate runs",
    }
    print(f"input: {figures['input']['path']} ({figures['input']['bytes'] / 1e6:.0f} MB)")
    for side, times in seconds.items():
        print(
            f"{side:16s} best {min(times):6.1f} s  median {statistics.median(times):6.1f} s"
            f"  peak RSS {max(rss[side]):5.0f} MB"
        )
    for side, ratio in figures["ratios"].items():
        print(
            f"ratio {side} / gdal_translate x3: best {ratio['best']:.2f}, "
            f"median {ratio['median']:.2f} (target <= 1.0)"
        )
        split = figures["stages_of_best_run"][side]
        print("   " + ", ".join(f"{name} {value:.2f} s" for name, value in split.items()))
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
