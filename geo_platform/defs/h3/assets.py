"""H3 assets: the global grids (one partition per resolution, per resolution-0 cell from
5 on), the land grid, and H3 summaries of rasters and vector tables.

The partitions of ``h3_grid`` follow ``GEO_PLATFORM_H3_MAX_RESOLUTION``, read when the
definitions load (``defs/h3/definitions.py``), never at import.
"""

import datetime as dt
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import h3
import pyarrow as pa
import rasterio

from geo_platform.lib.h3.grid import (
    EARTH_AREA_KM2,
    GRID_SPEC,
    grid_batches,
    grid_groups,
    grid_partition_keys,
    parse_grid_partition,
    partition_cells,
)
from geo_platform.lib.h3.item import H3_COLLECTION, build_grid_item, h3_collection
from geo_platform.lib.h3.land import (
    LAND_GRID_SPEC,
    LandCount,
    LandError,
    land_cells,
    land_polygons,
    parse_table_name,
)
from geo_platform.lib.h3.load import GridProducer, GridStats, load_cells
from geo_platform.lib.h3.summary import (
    RASTER_SUMMARY_SPEC,
    VECTOR_SUMMARY_SPEC,
    RasterSummary,
    vector_cell_measures,
    vector_summary_batches,
)
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.raster.tiers import TIER_SPECS, Tier
from geo_platform.lib.stac.ids import collection_id
from geo_platform.lib.stac.validation import validate_item
from geo_platform.lib.vector.load import VECTOR_SCHEMA
from geo_platform.lib.vector.names import GEOMETRY_COLUMN
from geo_platform.resources.blob_store import BlobInfo, BlobStore
from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.resources.warehouse import PartitionWriter, Warehouse
from geo_platform.settings import get_h3_settings, get_platform_settings

GOLD = "gold"
# The relative difference the Earth-area check allows (the 0.01%).
AREA_TOLERANCE = 1e-4
_RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)
_GRID_CHECKS = {
    "cell_count": "the partition holds exactly the cells H3 has there",
    "pentagons": "12 pentagons per global resolution (1 under a pentagon base cell)",
    "area_sum": "a global resolution's cell areas sum to H3's Earth area within 0.01%",
    "geometries_valid": "every cell polygon is valid (antimeridian cells split)",
}


def grid_export_key(resolution: int, base: str | None) -> str:
    """Where a partition's GeoParquet goes in gold: a pure function of the partition."""
    if base is None:
        return f"h3/grid/resolution-{resolution}.parquet"
    return f"h3/grid/resolution-{resolution}/{base}.parquet"


def upload_export(blob_store: BlobStore, path: Path, key: str) -> dict:
    digest = sha256_file(path)
    info = blob_store.upload_file(path, GOLD, key, consume=True)
    return {"href": blob_store.href(GOLD, key), "size": info.size, "sha256": digest}


H3_GRID = dg.AssetKey("h3_grid")
# Partitions whose materializations and items are written together: events and catalog
# writes in bulk, and a process killed mid-run loses at most this many partitions' records.
RECORD_EVERY = 8
# Below this many cells a run makes its grid in-process: a worker pool costs ~1 s to start.
POOL_CELLS = 200_000


@dataclass
class _Done:
    key: str
    resolution: int
    base: str | None
    rows: int
    stats: GridStats
    export: dict
    item: dict


def build_h3_grid(max_resolution: int) -> dg.AssetsDefinition:
    """``h3_grid`` with partitions for resolutions 0 to ``max_resolution``."""
    partitions = dg.StaticPartitionsDefinition(grid_partition_keys(max_resolution))

    @dg.multi_asset(
        name="h3_grid",
        specs=[
            dg.AssetSpec(
                H3_GRID,
                partitions_def=partitions,
                group_name="h3",
                kinds={"postgis", "duckdb", "geoparquet", "stac"},
                description=GRID_DESCRIPTION,
                skippable=True,
            )
        ],
        check_specs=[
            dg.AssetCheckSpec(name, asset=H3_GRID, description=text)
            for name, text in _GRID_CHECKS.items()
        ],
        # Many partitions a run (a run costs a second or more of bookkeeping; resolution 6
        # is 122 partitions), each recorded on its own as it is done.
        backfill_policy=dg.BackfillPolicy.single_run(),
        # Outputs optional: each partition is recorded by its own events.
        can_subset=True,
    )
    def h3_grid(
        context: dg.AssetExecutionContext,
        blob_store: BlobStore,
        warehouse: dg.ResourceParam[Warehouse],
        stac_catalog: dg.ResourceParam[StacCatalog],
    ) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
        """Makes the run's grid partitions in worker processes and replaces each in the
        warehouse, gold and the catalog; a partition that fails does not stop the others."""
        keys = context.partition_keys
        parsed = [parse_grid_partition(key) for key in keys]
        settings = get_h3_settings()
        jobs = [
            (r, list(grid_groups(r, [base] if base else None, settings.batch_cells)))
            for r, base in parsed
        ]
        cells = sum(partition_cells(r, base) for r, base in parsed)
        workers = settings.workers or os.cpu_count() or 1
        workers = workers if cells >= POOL_CELLS else 1
        if stac_catalog.get_collection(H3_COLLECTION) is None:
            stac_catalog.upsert_collection(h3_collection())
        failed: dict[str, str] = {}
        done: list[_Done] = []
        scratch = get_platform_settings().scratch_path
        scratch.mkdir(parents=True, exist_ok=True)
        with (
            GridProducer(jobs, workers) as producer,
            warehouse.partition_writer(GRID_SPEC) as writer,
            tempfile.TemporaryDirectory(prefix="h3-", dir=scratch) as tmp,
        ):
            for index, (key, (resolution, base)) in enumerate(zip(keys, parsed, strict=True)):
                try:
                    done.append(
                        _grid_partition(
                            key,
                            resolution,
                            base,
                            producer.batches(index),
                            writer,
                            blob_store,
                            warehouse.location,
                            Path(tmp),
                        )
                    )
                except Exception as e:  # noqa: BLE001 - one partition failing stops no other
                    failed[key] = f"{key}: {type(e).__name__}: {e}"
                    context.log.error(failed[key])
                if len(done) >= RECORD_EVERY:
                    yield from _record(done, stac_catalog, context)
            yield from _record(done, stac_catalog, context)
        if failed:
            shown = "\n".join(list(failed.values())[:10])
            raise dg.Failure(
                description=f"{len(failed)} of {len(keys)} h3_grid partitions failed:\n{shown}",
                metadata={"failed_partitions": dg.MetadataValue.json(sorted(failed))},
            )

    return h3_grid


GRID_DESCRIPTION = (
    "The complete global H3 grid of one resolution (from resolution 5 on, of one "
    "resolution-0 cell) in the warehouse table h3.grid: h3_index, resolution, parent, "
    "base_cell, is_pentagon, area_km2 and the boundary in EPSG:4326. Replacing a partition "
    "swaps its rows in one transaction; a GeoParquet copy goes to gold and a STAC item to "
    "system-h3-grids."
)


def _grid_partition(
    key: str,
    resolution: int,
    base: str | None,
    batches: Iterator[tuple[pa.RecordBatch, GridStats]],
    writer: PartitionWriter,
    blob_store: BlobStore,
    location: str,
    tmp: Path,
) -> _Done:
    table_partition: dict[str, str | int] = {"resolution": resolution}
    if base is not None:
        table_partition["base_cell"] = int(h3.get_base_cell_number(base))
    path = tmp / "grid.parquet"
    rows, stats = load_cells(
        GRID_SPEC, batches, lambda rows: writer.replace(table_partition, rows), path
    )
    export = upload_export(blob_store, path, grid_export_key(resolution, base))
    item = build_grid_item(
        resolution=resolution,
        base_cell=base,
        rows=rows,
        table_location=f"{location}#{GRID_SPEC.schema}.{GRID_SPEC.name}",
        export=export,
        created=dt.datetime.now(dt.UTC),
    )
    return _Done(key, resolution, base, rows, stats, export, item)


def _record(
    done: list[_Done], stac_catalog: StacCatalog, context: dg.AssetExecutionContext
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation]:
    """The items of ``done`` partitions into the catalog, then their events; empties it."""
    if not done:
        return
    stac_catalog.upsert_items([d.item for d in done])
    for d in done:
        context.log.info(f"h3.grid {d.key}: {d.rows:,} cells")
        yield dg.AssetMaterialization(
            H3_GRID,
            partition=d.key,
            metadata={
                "table": f"{GRID_SPEC.schema}.{GRID_SPEC.name}",
                "resolution": d.resolution,
                "base_cell": d.base or "all",
                "cells": dg.MetadataValue.int(d.rows),
                "pentagons": dg.MetadataValue.int(d.stats.pentagons),
                "area_km2": dg.MetadataValue.float(d.stats.area_km2),
                "antimeridian_cells": dg.MetadataValue.int(d.stats.split),
                "export": d.export["href"],
                "stac_item": f"{H3_COLLECTION}/{d.item['id']}",
                "item_problems": "; ".join(validate_item(d.item)) or "none",
            },
        )
        for name, passed, metadata in _grid_checks(d.resolution, d.base, d.stats):
            if dg.AssetCheckKey(H3_GRID, name) not in context.selected_asset_check_keys:
                continue
            yield dg.AssetCheckEvaluation(
                asset_key=H3_GRID,
                check_name=name,
                passed=passed,
                metadata=metadata,
                partition=d.key,
            )
    done.clear()


def _grid_checks(
    resolution: int, base: str | None, stats: GridStats
) -> Iterator[tuple[str, bool, dict]]:
    expected = partition_cells(resolution, base)
    yield "cell_count", stats.rows == expected, {"cells": stats.rows, "expected": expected}
    pentagons = 12 if base is None else int(h3.is_pentagon(base))
    yield (
        "pentagons",
        stats.pentagons == pentagons,
        {"pentagons": stats.pentagons, "expected": pentagons},
    )
    if base is None:
        error = abs(stats.area_km2 / EARTH_AREA_KM2 - 1)
        yield (
            "area_sum",
            error <= AREA_TOLERANCE,
            {"area_km2": stats.area_km2, "earth_km2": EARTH_AREA_KM2, "relative_error": error},
        )
    else:
        # Children do not tile their resolution-0 ancestor exactly: the Earth's area is
        # a property of a whole resolution, checked on the global partitions.
        yield (
            "area_sum",
            True,
            {"area_km2": stats.area_km2, "note": "one resolution-0 cell: not global"},
        )
    yield (
        "geometries_valid",
        stats.invalid == 0,
        {"invalid": stats.invalid, "split_at_antimeridian": stats.split},
    )


VECTOR_TABLE = dg.AssetKey("vector_table")
LAND_GRID_CHECKS = {
    "land_cells": "some cells were kept and some dropped (a land table that covers all or "
    "nothing is the wrong table)",
    "geometries_valid": "every kept cell polygon is valid",
}


@dg.asset(
    deps=[VECTOR_TABLE],
    group_name="h3",
    kinds={"postgis", "duckdb", "geoparquet"},
    check_specs=[
        dg.AssetCheckSpec(name, asset="h3_land_grid", description=text)
        for name, text in LAND_GRID_CHECKS.items()
    ],
    retry_policy=_RETRY,
)
def h3_land_grid(
    context: dg.AssetExecutionContext,
    blob_store: BlobStore,
    warehouse: dg.ResourceParam[Warehouse],
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """The H3 grid of ``GEO_PLATFORM_H3_LAND_RESOLUTION`` (4) kept where it intersects land:
    the polygons of ``GEO_PLATFORM_H3_LAND_TABLE`` (the Natural Earth countries ingested as
    ``naturalearth/countries.zip`` by default), in ``h3.land_grid`` and as GeoParquet in
    gold."""
    settings = get_h3_settings()
    schema, table = parse_table_name(settings.land_table)
    try:
        land = land_polygons(
            (
                wkb
                for batch in warehouse.read_table(schema, table, [], "geom")
                for wkb in batch.column("geom").to_pylist()
            ),
            f"{schema}.{table}",
        )
    except LookupError:
        raise dg.Failure(
            f"land table {schema}.{table} does not exist: ingest the Natural Earth countries "
            "(geo-platform ingest countries.zip --collection naturalearth) or set "
            "GEO_PLATFORM_H3_LAND_TABLE to a polygon table",
            allow_retries=False,
        ) from None
    except LandError as e:
        raise dg.Failure(str(e), allow_retries=False) from None
    srids = warehouse.check_geometries(schema, table, "geom").srids
    if srids not in ((4326,), ()):
        raise dg.Failure(
            f"land table {schema}.{table} is in SRID {srids}, not 4326", allow_retries=False
        )
    resolution = settings.land_resolution
    count = LandCount()
    scratch = get_platform_settings().scratch_path
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="h3-land-", dir=scratch) as tmp:
        path = Path(tmp) / "land.parquet"
        rows, stats = load_cells(
            LAND_GRID_SPEC,
            land_cells(grid_batches(resolution), land, count),
            lambda batches: warehouse.replace_table(LAND_GRID_SPEC, batches),
            path,
        )
        export = upload_export(blob_store, path, f"h3/land_grid/resolution-{resolution}.parquet")
    context.log.info(f"h3.land_grid: {count.kept:,} cells kept, {count.dropped:,} dropped")
    yield dg.MaterializeResult(
        metadata={
            "table": f"{LAND_GRID_SPEC.schema}.{LAND_GRID_SPEC.name}",
            "land_table": f"{schema}.{table}",
            "resolution": resolution,
            "cells_kept": dg.MetadataValue.int(count.kept),
            "cells_dropped": dg.MetadataValue.int(count.dropped),
            "kept_share": dg.MetadataValue.float(
                round(count.kept / (count.kept + count.dropped), 4)
            ),
            "area_km2": dg.MetadataValue.float(stats.area_km2),
            "export": export["href"],
        }
    )
    yield dg.AssetCheckResult(
        check_name="land_cells",
        passed=rows == count.kept and count.kept > 0 and count.dropped > 0,
        metadata={"kept": count.kept, "dropped": count.dropped, "stored": rows},
    )
    yield dg.AssetCheckResult(
        check_name="geometries_valid",
        passed=stats.invalid == 0,
        metadata={"invalid": stats.invalid},
    )


COG_ANALYSIS = dg.AssetKey("cog_analysis")
# An analysis tier's blob: <stem>.analysis.<version>.tif (lib.raster.tiers).
ANALYSIS_VERSION = re.compile(r"(.+)\.analysis\.[0-9a-f]{12}\.tif")
# Eager, but not held back by missing partitions (as collection_summary): one bad raster
# or vector file must not freeze the summaries.
_SUMMARY_CONDITION = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_missing()
)


@dg.asset(
    deps=[COG_ANALYSIS],
    group_name="h3",
    kinds={"postgis", "duckdb"},
    automation_condition=_SUMMARY_CONDITION,
    retry_policy=_RETRY,
)
def h3_raster_summary(
    context: dg.AssetExecutionContext,
    blob_store: BlobStore,
    warehouse: dg.ResourceParam[Warehouse],
) -> dg.MaterializeResult:
    """Zonal statistics of each raster collection's analysis tiers per H3 cell (resolution
    ``GEO_PLATFORM_H3_SUMMARY_RESOLUTION``): pixels, count of valid ones, nodata share, min,
    max and mean per band, read window by window; in ``h3.raster_summary``, one partition of
    rows per collection."""
    settings = get_h3_settings()
    # The newest version of each raster's analysis tier (an older one lingers only until
    # the new item is stored).
    newest: dict[str, BlobInfo] = {}
    for blob in blob_store.list_blobs(TIER_SPECS[Tier.ANALYSIS].container):
        if match := ANALYSIS_VERSION.fullmatch(blob.key):
            stem = match.group(1)
            if stem not in newest or blob.last_modified > newest[stem].last_modified:
                newest[stem] = blob
    tiers: dict[str, list[str]] = {}
    for blob in newest.values():
        tiers.setdefault(collection_id(blob.key), []).append(blob.key)
    wanted = set(settings.raster_collections) or set(tiers)
    rows = ["| collection | rasters | rows |", "|---|---|---|"]
    total = 0
    for collection in sorted(wanted):
        keys = sorted(tiers.get(collection, []))
        summary = RasterSummary(resolution=settings.summary_resolution)
        container = TIER_SPECS[Tier.ANALYSIS].container
        with rasterio.Env(**blob_store.gdal_env()):
            for key in keys:
                summary.add_raster(blob_store.gdal_path(container, key), settings.window_size)
        loaded = warehouse.replace_partition(
            RASTER_SUMMARY_SPEC, {"collection": collection}, summary.batches(collection)
        )
        total += loaded
        rows.append(f"| {collection} | {len(keys)} | {loaded:,} |")
        context.log.info(f"h3.raster_summary: {collection}: {len(keys)} rasters, {loaded:,} rows")
    return dg.MaterializeResult(
        metadata={
            "table": f"{RASTER_SUMMARY_SPEC.schema}.{RASTER_SUMMARY_SPEC.name}",
            "resolution": settings.summary_resolution,
            "rows": dg.MetadataValue.int(total),
            "collections": dg.MetadataValue.md("\n".join(rows)),
        }
    )


@dg.asset(
    deps=[VECTOR_TABLE],
    group_name="h3",
    kinds={"postgis", "duckdb"},
    automation_condition=_SUMMARY_CONDITION,
    retry_policy=_RETRY,
)
def h3_vector_summary(
    context: dg.AssetExecutionContext,
    warehouse: dg.ResourceParam[Warehouse],
) -> dg.MaterializeResult:
    """Per H3 cell (resolution ``GEO_PLATFORM_H3_SUMMARY_RESOLUTION``) of each vector
    table: the features that meet it, and the geodesic area (km²) and length (km) of their
    parts inside it; in ``h3.vector_summary``, one partition of rows per table."""
    settings = get_h3_settings()
    layers = {layer["table"]: layer["record"] for layer in warehouse.layers()}
    wanted = settings.vector_tables or sorted(layers)
    rows = ["| table | cells | note |", "|---|---|---|"]
    total = 0
    for table in wanted:
        record = layers.get(table)
        if record is None:
            rows.append(f"| {table} | 0 | no such vector table |")
            continue
        if record.get("srid", 4326) != 4326:
            rows.append(f"| {table} | 0 | skipped: SRID {record['srid']}, not 4326 |")
            continue
        geometries = (
            wkb
            for batch in warehouse.read_table(VECTOR_SCHEMA, table, [], GEOMETRY_COLUMN)
            for wkb in batch.column(GEOMETRY_COLUMN).to_pylist()
        )
        measures = vector_cell_measures(geometries, settings.summary_resolution)
        loaded = warehouse.replace_partition(
            VECTOR_SUMMARY_SPEC,
            {"source_table": table},
            vector_summary_batches(measures, table, settings.summary_resolution),
        )
        total += loaded
        rows.append(f"| {table} | {loaded:,} | |")
        context.log.info(f"h3.vector_summary: {table}: {loaded:,} cells")
    return dg.MaterializeResult(
        metadata={
            "table": f"{VECTOR_SUMMARY_SPEC.schema}.{VECTOR_SUMMARY_SPEC.name}",
            "resolution": settings.summary_resolution,
            "rows": dg.MetadataValue.int(total),
            "tables": dg.MetadataValue.md("\n".join(rows)),
        }
    )
