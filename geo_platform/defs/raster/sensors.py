"""Notice rasters landing in bronze and request their runs."""

import dagster as dg

from geo_platform.defs.raster.assets import SOURCE_ETAG, STAC_ITEM, TIER_ASSETS, VALIDATION
from geo_platform.defs.raster.jobs import raster_ingest_job
from geo_platform.defs.raster.partitions import RASTER_PARTITIONS, raster_partitions
from geo_platform.lib.blob_scan import ScanCursor, scan
from geo_platform.lib.collections_config import load_collections_config, requested_tiers
from geo_platform.lib.stac.ids import collection_id
from geo_platform.resources.blob_store import BRONZE, BlobStore
from geo_platform.settings import get_platform_settings

# Validating a run request costs ~28 ms on the code server; 200 stay far inside
# the 60 s tick timeout. The rest wait for the next tick.
MAX_RUNS_PER_TICK = 200
# The production instance allows one run in progress per value of this tag.
COLLECTION_TAG = "geo_platform/pgstac_collection"


@dg.sensor(
    job=raster_ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def bronze_rasters(context: dg.SensorEvaluationContext, blob_store: BlobStore) -> dg.SensorResult:
    """Registers new or changed raster blobs in bronze as partitions of ``rasters`` and
    requests one run each, with the tiers their collection asks for."""
    cursor = ScanCursor.from_json(context.cursor)
    listing = ((blob.key, blob.etag) for blob in blob_store.list_blobs(BRONZE))
    result = scan(listing, cursor, max_runs=MAX_RUNS_PER_TICK)
    for key, problem in result.rejected:
        context.log.warning(f"{BRONZE}/{key}: skipped, cannot be a partition key: {problem}")
    known = set(context.instance.get_dynamic_partitions(RASTER_PARTITIONS))
    new_keys = [key for key, _ in result.to_run if key not in known]
    done = _already_ingested(context.instance, [k for k in result.to_run if k[0] in known])
    if done:
        context.log.info(f"{len(done)} blobs were already ingested (by the CLI or a backfill)")
    collections = load_collections_config(get_platform_settings().collections_path)
    requests = [
        dg.RunRequest(
            run_key=f"{key}@{etag}",
            partition_key=key,
            asset_selection=_selection(key, collections),
            tags={
                "geo_platform/source": f"{BRONZE}/{key}",
                COLLECTION_TAG: collection_id(key),
            },
        )
        for key, etag in result.to_run
        if (key, etag) not in done
    ]
    if result.deferred:
        context.log.info(f"{result.deferred} more blobs wait for the next tick")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[raster_partitions.build_add_request(new_keys)]
        if new_keys
        else [],
        cursor=result.cursor.to_json(),
    )


def _already_ingested(
    instance: dg.DagsterInstance, candidates: list[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Blobs whose latest validation saw this very ETag: nothing new to do for them."""
    if not candidates:
        return set()
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=VALIDATION,
            asset_partitions=[key for key, _ in candidates],
        ),
        limit=len(candidates) * 4,
    ).records
    latest: dict[str, str] = {}
    for record in records:  # newest first
        materialization = record.asset_materialization
        partition = materialization.partition if materialization else None
        if materialization and partition is not None and partition not in latest:
            etag = materialization.metadata.get(SOURCE_ETAG)
            latest[partition] = str(etag.value) if etag else ""
    return {(key, etag) for key, etag in candidates if latest.get(key) == etag}


def _selection(key: str, collections: dict[str, dict]) -> list[dg.AssetKey]:
    tiers = requested_tiers(collection_id(key), None, collections)
    return [VALIDATION, *(TIER_ASSETS[tier] for tier in tiers), STAC_ITEM]
