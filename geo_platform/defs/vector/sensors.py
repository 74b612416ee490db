"""Notice vector files landing in bronze and request their runs."""

import dagster as dg

from geo_platform.defs.raster.assets import SOURCE_ETAG
from geo_platform.defs.vector.jobs import vector_ingest_job
from geo_platform.defs.vector.partitions import VECTOR_PARTITIONS, vector_partitions
from geo_platform.lib.blob_scan import ScanCursor, scan
from geo_platform.lib.vector.formats import is_vector_key
from geo_platform.resources.blob_store import BRONZE, BlobStore

# As for rasters: run requests are validated one by one on the code server.
MAX_RUNS_PER_TICK = 200


@dg.sensor(
    job=vector_ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def bronze_vectors(context: dg.SensorEvaluationContext, blob_store: BlobStore) -> dg.SensorResult:
    """Registers new or changed vector files in bronze (GeoJSON, zipped Shapefile,
    GeoPackage, GeoParquet, FlatGeobuf) as partitions of ``vector_sources`` and requests
    one run each: their tables and STAC items."""
    cursor = ScanCursor.from_json(context.cursor)
    listing = ((blob.key, blob.etag) for blob in blob_store.list_blobs(BRONZE))
    result = scan(listing, cursor, max_runs=MAX_RUNS_PER_TICK, accept=is_vector_key)
    for key, problem in result.rejected:
        context.log.warning(f"{BRONZE}/{key}: skipped, cannot be a partition key: {problem}")
    known = set(context.instance.get_dynamic_partitions(VECTOR_PARTITIONS))
    new_keys = [key for key, _ in result.to_run if key not in known]
    done = _already_loaded(context.instance, [k for k in result.to_run if k[0] in known])
    requests = [
        dg.RunRequest(
            run_key=f"{key}@{etag}",
            partition_key=key,
            tags={"geo_platform/source": f"{BRONZE}/{key}"},
        )
        for key, etag in result.to_run
        if (key, etag) not in done
    ]
    if result.deferred:
        context.log.info(f"{result.deferred} more vector files wait for the next tick")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[vector_partitions.build_add_request(new_keys)]
        if new_keys
        else [],
        cursor=result.cursor.to_json(),
    )


def _already_loaded(
    instance: dg.DagsterInstance, candidates: list[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Files whose latest load saw this very ETag (loaded by the CLI, say)."""
    if not candidates:
        return set()
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("vector_table"),
            asset_partitions=[key for key, _ in candidates],
        ),
        limit=len(candidates) * 4,
    ).records
    latest: dict[str, str] = {}
    for record in records:
        materialization = record.asset_materialization
        partition = materialization.partition if materialization else None
        if materialization and partition is not None and partition not in latest:
            etag = materialization.metadata.get(SOURCE_ETAG)
            latest[partition] = str(etag.value) if etag else ""
    return {(key, etag) for key, etag in candidates if latest.get(key) == etag}
