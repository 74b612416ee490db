"""Thousands of small rasters landed in bronze, to the catalog: the sensor's ticks and the
runs they request, vs a bare loop of the same library calls.

.venv/bin/python benchmarks/many_files.py [--files 10000] [--profile embedded|production]"""

import datetime as dt
import json
import shutil
import statistics
import time
import uuid
from pathlib import Path

import harness as h
import stac_load

from geo_platform import backends, settings
from geo_platform.lib.raster import cog, tiers, validate
from geo_platform.lib.stac import collection, item


def bare_loop(folder: str, data_dir: str) -> None:
    """Per file, what the platform does (validation, analysis tier, item), with no Dagster;
    items written 200 at a time, as the platform writes them."""
    catalog = backends.stac_catalog(settings.get_platform_settings())
    catalog.upsert_collection(collection.new_collection("bare"))
    batch, analysis = [], tiers.Tier.ANALYSIS
    for path in sorted(Path(folder).glob("*.tif")):
        key = f"bare/{path.name}"
        info = validate.validate_raster(path, settings.LimitSettings(), name=key)
        out = cog.write_cog_tiers(path, [analysis], Path(data_dir) / "bare" / path.stem)[analysis]
        ref = tiers.TierRef(analysis, str(out.path), str(out.path), out.size_bytes, out.sha256)
        at = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
        batch.append(
            item.build_item(ref.href, key, [ref], source_sha256=info.sha256, fallback_datetime=at)
        )
        if len(batch) == 200:
            catalog.upsert_items(batch)
            batch = []
    catalog.upsert_items(batch)


def platform(folder: str, report: str) -> None:
    """Land the files in bronze, then what the daemon does: sensor ticks (their results
    applied to the instance) until a pass finds nothing new, and every requested run."""
    import dagster as dg

    from geo_platform.defs.raster import sensors
    from geo_platform.instance import get_instance
    from geo_platform.runs import RasterRunner

    current = settings.get_platform_settings()
    store = backends.blob_store(current)
    for path in sorted(Path(folder).glob("*.tif")):
        store.upload_file(path, "bronze", f"many/{path.name}")
    started = time.perf_counter()
    sensors.SETTLE = dt.timedelta(0)  # the files landed just now; nobody else ingests them
    instance, runner = get_instance(current), RasterRunner(current)
    ticks, requests, cursor = [], [], None
    while True:
        tick = time.perf_counter()
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"blob_store": store}
        )
        result = sensors.bronze_rasters(context)
        for partitions in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(
                partitions.partitions_def_name, partitions.partition_keys
            )
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        ticks.append(time.perf_counter() - tick)
        requests += result.run_requests
        cursor = result.cursor
        if not result.run_requests and json.loads(cursor)["token"] is None:
            break
    for request in requests:
        runner.job.execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection,
            run_config={"loggers": runner.loggers}, raise_on_error=False,
        )  # fmt: skip
    figures = {
        "runs": len(requests),
        "ticks": len(ticks),
        "tick median s": statistics.median(ticks),
    }
    figures |= {"tick max s": max(ticks), "seconds": time.perf_counter() - started}
    items = len(backends.stac_catalog(current).item_ids("many"))
    Path(report).write_text(json.dumps(figures | {"items": items}))


def main() -> None:
    args = h.options(__doc__, files=10_000, profile="embedded")
    folder = h.DATA / f"many-{args.files}"
    for i in range(args.files):
        h.raster("dem", 256, folder / f"r{i:05d}.tif", h.SEED + i, 4e5 + i * 512)
    data = h.DATA / "many_files"
    shutil.rmtree(data, ignore_errors=True)
    env = h.platform_env(args.profile, data_dir=str(data))
    if args.profile == "production":
        prefix = f"b{uuid.uuid4().hex[:8]}-"
        env = h.platform_env(
            "production", data_dir=str(data), pg_database=stac_load.database(),
            pg_dagster_database=stac_load.database(), azure_container_prefix=prefix,
        )  # fmt: skip
    report = data / "platform.json"
    bare = h.run([*h.call("many_files:bare_loop", folder, data)], env)
    ours = h.run(h.call("many_files:platform", folder, report), env, timed=True)
    figures = json.loads(report.read_text())
    seconds = figures["seconds"]
    rows = [
        {"side": "bare loop", "files/s": args.files / bare.wall_s, "s": bare.wall_s,
         "peak RSS MB": bare.rss // h.MB},
        {"side": "sensor + runs", "files/s": args.files / seconds, "s": seconds,
         "peak RSS MB": ours.rss // h.MB, "ours/bare (<= 1.5)": seconds / bare.wall_s,
         "runs": figures["runs"], "files per run (>= 10)": args.files / max(1, figures["runs"]),
         "tick median s": figures["tick median s"], "tick max s (<= 30)": figures["tick max s"]},
    ]  # fmt: skip
    h.table(rows)
    print(f"items cataloged: {figures['items']} of {args.files}")
    if args.profile == "production":
        stac_load.drop_databases()
    shutil.rmtree(data)
    h.write(
        f"many_files.{args.profile}", {"files": args.files, "sides": rows}, args.files != 10_000
    )


if __name__ == "__main__":
    main()
