"""Notice vector files landing in or changing in bronze, and request their runs."""

import datetime as dt

import dagster as dg

from geo_platform.defs.bronze import latest_observed, observation
from geo_platform.defs.raster.sensors import PAGE_SIZE
from geo_platform.defs.vector.assets import BRONZE_VECTOR
from geo_platform.defs.vector.jobs import vector_ingest_job
from geo_platform.defs.vector.partitions import VECTOR_PARTITIONS, vector_partitions
from geo_platform.lib.blob_scan import BronzeCursor, ListedBlob, plan_page
from geo_platform.lib.vector.formats import is_vector_key
from geo_platform.resources.blob_store import BRONZE, BlobStore
from geo_platform.settings import get_run_settings

# One run per file (a vector file is a table, maybe big): run requests are validated one
# by one on the code server, so a tick hands out fewer than the raster sensor's ranges.
MAX_CHANGES_PER_TICK = 200


@dg.sensor(
    job=vector_ingest_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def bronze_vectors(context: dg.SensorEvaluationContext, blob_store: BlobStore) -> dg.SensorResult:
    """Lists bronze a page per tick and compares each vector file's ETag (GeoJSON, zipped
    Shapefile, GeoPackage, GeoParquet, FlatGeobuf) with the version last observed for it:
    new and changed files are observed, registered as partitions of ``vector_sources``
    and get one run each (their tables and STAC items)."""
    cursor = BronzeCursor.from_json(context.cursor)
    page = blob_store.list_page(BRONZE, cursor.token, PAGE_SIZE)
    blobs = [ListedBlob(b.key, b.etag, b.stored_at) for b in page.blobs]
    registered = context.instance.get_dynamic_partitions(VECTOR_PARTITIONS)
    plan = plan_page(
        blobs,
        page.next_token,
        cursor,
        observed=latest_observed(context.instance, BRONZE_VECTOR, [b.key for b in blobs]),
        registered=sorted(registered),
        now=dt.datetime.now(dt.UTC),
        settle=get_run_settings().settle,
        max_changes=MAX_CHANGES_PER_TICK,
        accept=is_vector_key,
    )
    for key, problem in plan.rejected:
        context.log.warning(f"{BRONZE}/{key}: skipped, cannot be a partition key: {problem}")
    if plan.deleted:
        # Tables stay until someone drops them: a table can be in use by people who
        # never see the bronze container.
        context.log.warning(
            f"{len(plan.deleted)} vector files left bronze; their tables are kept: "
            + ", ".join(plan.deleted[:10])
        )
    known = set(registered)
    new_keys = [key for key, _ in plan.changed if key not in known]
    requests = [
        dg.RunRequest(
            run_key=f"vector:{key}@{etag}",
            partition_key=key,
            tags={"geo_platform/source": f"{BRONZE}/{key}"},
        )
        for key, etag in plan.changed
    ]
    context.log.info(
        f"listed {len(blobs)} blobs: {len(plan.changed)} vector files new or changed, "
        f"{plan.unsettled} still settling; {len(requests)} runs requested"
    )
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[vector_partitions.build_add_request(new_keys)]
        if new_keys
        else [],
        asset_events=[observation(BRONZE_VECTOR, key, etag) for key, etag in plan.changed],
        cursor=plan.cursor.to_json(),
    )
