"""Thousands of small rasters landed in bronze, to the catalog: the sensor's ticks and the
runs they request, vs a bare loop of the same library calls; then the sensor alone."""

import datetime as dt
import itertools
import json
import shutil
import statistics
import time
from functools import partial
from pathlib import Path

import harness as h

from geo_platform import backends, settings
from geo_platform.lib.raster import cog, tiers, validate
from geo_platform.lib.stac import collection, item


def bare_loop(folder: str, report: str, name: str = "bare", batch_size: str = "200") -> None:
    """Per file, what the platform does, as a hand-written function would with no Dagster:
    the blob read from bronze, validated, its analysis tier written to the tier's container
    and its item built; items written ``batch_size`` at a time (as the platform's runs)."""
    current = settings.get_platform_settings()
    store, catalog = backends.blob_store(current), backends.stac_catalog(current)
    catalog.upsert_collection(collection.new_collection(name))
    paths = sorted(Path(folder).glob("*.tif"))
    for path in paths:  # landed in bronze before the clock starts, as for the platform
        store.upload_file(path, "bronze", f"{name}/{path.name}")
    started = time.perf_counter()
    batch, analysis = [], tiers.Tier.ANALYSIS
    container, scratch = tiers.TIER_SPECS[analysis].container, Path(report).parent / "bare"
    scratch.mkdir(exist_ok=True)
    for path in paths:
        key = f"{name}/{path.name}"
        with store.local_file("bronze", key, scratch=scratch) as source:
            info = validate.validate_raster(source, settings.LimitSettings(), name=key)
            out = cog.write_cog_tiers(source, [analysis], scratch / path.stem)[analysis]
        blob_key = tiers.tier_blob_key(analysis, key, out.sha256)
        href, at = store.href(container, blob_key), dt.datetime.now(dt.UTC)
        ref = tiers.TierRef(analysis, href, str(out.path), out.size_bytes, out.sha256)
        batch.append(  # the item read from the local tier, before it is stored
            item.build_item(
                str(out.path), key, [ref], source_sha256=info.sha256, fallback_datetime=at
            )
        )
        store.upload_file(out.path, container, blob_key, consume=True)
        if len(batch) == int(batch_size):
            catalog.upsert_items(batch)
            batch = []
    catalog.upsert_items(batch)
    seconds = time.perf_counter() - started
    for path in paths:  # not for the platform's sensor to find
        store.delete("bronze", f"{name}/{path.name}")
    Path(report).write_text(json.dumps({"seconds": seconds}))


def platform(folder: str, report: str) -> None:
    """Land the files in bronze, then what the daemon does: ticks until a pass finds
    nothing new, every requested run, then one more pass, which must find nothing."""
    import dagster as dg

    from geo_platform.instance import get_instance
    from geo_platform.runs import RasterRunner

    current = settings.get_platform_settings()
    store = backends.blob_store(current)
    progress = Path(report).with_suffix(".log")
    for path in sorted(Path(folder).glob("*.tif")):
        store.upload_file(path, "bronze", f"many/{path.name}")
    _log(progress, "landed in bronze")
    # A daemon has its instance and definitions loaded before blobs land.
    instance, runner = get_instance(current), RasterRunner(current)
    started = time.perf_counter()
    cursor: str | None = None

    def one_pass() -> tuple[list[float], list[dg.RunRequest]]:
        """Ticks until the listing wraps around and a tick requests nothing."""
        nonlocal cursor
        ticks, requests = [], []
        while True:
            tick = time.perf_counter()
            result = _tick(instance, store, cursor)
            ticks.append(time.perf_counter() - tick)
            requests += result.run_requests
            cursor = result.cursor
            _log(progress, f"tick {ticks[-1]:.2f} s, {len(result.run_requests)} runs requested")
            if not result.run_requests and json.loads(cursor)["token"] is None:
                return ticks, requests

    ticks, requests = one_pass()
    for number, request in enumerate(requests, 1):
        runner.job.execute_in_process(
            instance=instance, tags=request.tags, asset_selection=request.asset_selection,
            run_config={"loggers": runner.loggers}, raise_on_error=False,
        )  # fmt: skip
        _log(progress, f"run {number} of {len(requests)} done")
    seconds = time.perf_counter() - started
    idle, again = one_pass()
    figures = {
        "seconds": seconds,
        "runs": len(requests),
        "ticks": len(ticks),
        "tick median s": statistics.median(ticks),
        "tick max s (<= 30)": max(ticks),
        "idle tick max s (<= 30)": max(idle),
        "runs requested again (0)": len(again),
        "items": len(backends.stac_catalog(current).item_ids("many")),
    }
    Path(report).write_text(json.dumps(figures))


def sensor_ticks(source: str, count: str, report: str) -> None:
    """The sensor alone over ``count`` copies of a small raster: a pass that requests them
    all (runs not run), then a pass that finds nothing new."""
    from concurrent.futures import ThreadPoolExecutor

    from geo_platform.instance import get_instance

    current = settings.get_platform_settings()
    store = backends.blob_store(current)
    with ThreadPoolExecutor(8) as pool:  # uploads wait on the network, not on a core
        keys = [f"ticks/t{i:05d}.tif" for i in range(int(count))]
        list(pool.map(lambda key: store.upload_file(source, "bronze", key), keys))
    instance, cursor, passes = get_instance(current), None, []
    for _ in range(2):
        ticks, runs = [], 0
        while True:  # until the listing wraps around and a tick requests nothing
            tick = time.perf_counter()
            result = _tick(instance, store, cursor)
            ticks.append(time.perf_counter() - tick)
            runs, cursor = runs + len(result.run_requests), result.cursor
            if not result.run_requests and json.loads(cursor)["token"] is None:
                break
        passes.append({"ticks": ticks, "runs": runs, "cursor bytes": len(cursor or "")})
    Path(report).write_text(json.dumps(passes))


def _tick(instance, store, cursor: str | None):
    """One tick of the bronze sensor, with what the daemon does with its result."""
    import dagster as dg

    from geo_platform.defs.raster import sensors

    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"blob_store": store}
    )
    result = sensors.bronze_rasters(context)
    for partitions in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(partitions.partitions_def_name, partitions.partition_keys)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


def _log(path: Path, line: str) -> None:
    with path.open("a") as f:
        f.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def main() -> None:
    # No retries: the platform's worker processes count as other processes' work.
    args = h.options(
        __doc__, files=10_000, profile="embedded", tick_blobs=10_000, repeat=1, retries=0
    )
    folder = h.DATA / f"many-{args.files}"
    for i in range(args.files):
        h.raster("dem", 256, folder / f"r{i:05d}.tif", h.SEED + i, 4e5 + i * 512)
    with h.scratch(f"many_files-{args.profile}") as data:
        rounds = itertools.count()

        def side(function: str) -> h.Run:
            """A round of one side on a platform of its own (scratch services too)."""
            where = data / f"{function}-{next(rounds)}"
            where.mkdir()
            # The tier the bare loop writes (the platform's default: every tier that applies).
            (where / "collections.yaml").write_text("many:\n  output_tier: analysis\n")
            # The files landed just now and nobody else ingests them: no settling time.
            env = h.platform_env(args.profile, where, run_sensor_settle_seconds="0")
            # Both sides timed without interpreter start and imports (a worker pays them once).
            run = h.run(h.call(f"many_files:{function}", folder, where / "report.json"), env)
            report = json.loads((where / "report.json").read_text())
            shutil.rmtree(where)  # its tiers: disk space only
            return run._replace(wall_s=report.pop("seconds"), figures=tuple(report.items()))

        sides = {
            "bare loop": partial(side, "bare_loop"),
            "sensor + runs": partial(side, "platform"),
        }
        rows = h.versus(h.rounds(sides, args.repeat, args.retries), "<= 1.5")
        # The ticks alone: an empty instance and bronze container of their own.
        small = h.raster("dem", 64, h.DATA / "many-tick.tif")
        ticks = h.call("many_files:sensor_ticks", small, args.tick_blobs, data / "ticks.json")
        h.run(ticks, h.platform_env(args.profile, data / "ticks", run_sensor_settle_seconds="0"))
        passes = json.loads((data / "ticks.json").read_text())
    for row in rows:
        row["files/s"] = args.files / row["best s"]
    rows[1]["files per run (>= 10)"] = args.files / max(1, rows[1]["runs"])
    h.table(rows)
    print(f"items cataloged: {rows[1]['items']} of {args.files}")
    ticks_rows = [
        {"sensor over": f"{args.tick_blobs:,} blobs", "pass": name, "ticks": len(p["ticks"]),
         "runs requested": p["runs"], "tick median s": statistics.median(p["ticks"]),
         "tick max s (<= 30)": max(p["ticks"]), "cursor bytes": p["cursor bytes"]}
        for name, p in zip(("new blobs", "nothing new"), passes, strict=True)
    ]  # fmt: skip
    h.table(ticks_rows)
    results = {"files": args.files, "repeat": args.repeat, "sides": rows, "ticks": ticks_rows}
    h.write(f"many_files.{args.profile}", results, args.smoke)


if __name__ == "__main__":
    main()
