"""Notice rasters landing in, changing in and leaving bronze, and request their runs."""

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

import dagster as dg

from geo_platform.defs.bronze import latest_observed, observation
from geo_platform.defs.raster.assets import BRONZE_RASTER, STAC_ITEM, TIER_ASSETS, VALIDATION
from geo_platform.defs.raster.jobs import raster_cleanup, raster_ingest_job
from geo_platform.defs.raster.partitions import RASTER_PARTITIONS, raster_partitions
from geo_platform.defs.run_worker import fail_dead_runs
from geo_platform.lib.blob_scan import (
    BronzeCursor,
    ListedBlob,
    TickPlan,
    plan_page,
    versions_digest,
)
from geo_platform.lib.collections_config import load_collections_config, requested_tiers
from geo_platform.lib.partition_keys import contiguous_batches
from geo_platform.lib.stac.ids import collection_id
from geo_platform.resources.blob_store import BRONZE, BlobStore
from geo_platform.settings import get_platform_settings, get_run_settings

# Blobs listed per tick: one Azure page. A full pass over 10,000 blobs takes two ticks.
PAGE_SIZE = 5000
# Versions handed out per tick: each is one observation event, which the daemon stores
# one at a time (15-30 ms on a quiet machine, several times that on a busy one: 500 took
# 61 s on this 2-core machine under a load of 15), and its share of a run request; the
# rest wait on the same page for the next tick. 10,000 new blobs are 40 ticks, ~20 min
# at the 30 s interval: still ahead of the runs that process them.
MAX_CHANGES_PER_TICK = 250
# Which collection a run's rasters belong to: for filtering runs in the UI.
COLLECTION_TAG = "geo_platform/collection"


@dg.sensor(
    jobs=[raster_ingest_job, raster_cleanup],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def bronze_rasters(context: dg.SensorEvaluationContext, blob_store: BlobStore) -> dg.SensorResult:
    """Lists bronze a page per tick and compares each raster's ETag with the data version
    last observed for it: new and changed rasters are observed, registered as partitions
    and run in ranges; rasters deleted from bronze get a cleanup run."""
    # Runs whose process died while no new run started would stay STARTED until one does.
    for run_id in fail_dead_runs(context.instance):
        context.log.warning(f"run {run_id}: its process died; marked failed")
    cursor = BronzeCursor.from_json(context.cursor)
    page = blob_store.list_page(BRONZE, cursor.token, PAGE_SIZE)
    blobs = [ListedBlob(b.key, b.etag, b.stored_at) for b in page.blobs]
    registered = context.instance.get_dynamic_partitions(RASTER_PARTITIONS)
    plan = plan_page(
        blobs,
        page.next_token,
        cursor,
        observed=latest_observed(context.instance, BRONZE_RASTER, [b.key for b in blobs]),
        registered=sorted(registered),
        now=dt.datetime.now(dt.UTC),
        settle=get_run_settings().settle,
        max_changes=MAX_CHANGES_PER_TICK,
    )
    for key, problem in plan.rejected:
        context.log.warning(f"{BRONZE}/{key}: skipped, cannot be a partition key: {problem}")
    known = set(registered)
    new_keys = [key for key, _ in plan.changed if key not in known]
    requests = ingest_requests(plan.changed, [*registered, *new_keys])
    if plan.deleted:
        requests.append(cleanup_request(plan.deleted))
    context.log.info(_summary(plan, len(blobs), len(requests)))
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[raster_partitions.build_add_request(new_keys)]
        if new_keys
        else [],
        asset_events=[observation(BRONZE_RASTER, key, etag) for key, etag in plan.changed],
        cursor=plan.cursor.to_json(),
    )


def ingest_requests(changed: list[tuple[str, str]], ordered: Sequence[str]) -> list[dg.RunRequest]:
    """Ranged runs over ``changed``, per collection, in contiguous batches of ``ordered``
    (the order of registration); a run key per set of versions, so a version is never
    requested twice."""
    etags = dict(changed)
    by_collection: dict[str, set[str]] = defaultdict(set)
    for key, _ in changed:
        by_collection[collection_id(key)].add(key)
    collections = load_collections_config(get_platform_settings().collections_path)
    batch_size = get_run_settings().batch_size
    requests = []
    for collection, keys in sorted(by_collection.items()):
        tiers = requested_tiers(collection, None, collections)
        for batch in contiguous_batches(ordered, keys, batch_size):
            requests.append(
                dg.RunRequest(
                    # The sensor targets two jobs: Dagster refuses a request naming none.
                    job_name=raster_ingest_job.name,
                    run_key=f"ingest:{versions_digest([(k, etags[k]) for k in batch])}",
                    asset_selection=[VALIDATION, *(TIER_ASSETS[t] for t in tiers), STAC_ITEM],
                    tags={
                        "dagster/asset_partition_range_start": batch[0],
                        "dagster/asset_partition_range_end": batch[-1],
                        "geo_platform/source": f"{BRONZE}/{collection}/ ({len(batch)} files)",
                        COLLECTION_TAG: collection,
                    },
                )
            )
    return requests


def cleanup_request(keys: list[str]) -> dg.RunRequest:
    return dg.RunRequest(
        job_name=raster_cleanup.name,
        run_key=f"cleanup:{versions_digest([(key, '') for key in keys])}",
        run_config={"ops": {"remove_rasters": {"config": {"keys": keys}}}},
        tags={"geo_platform/source": f"{BRONZE} ({len(keys)} deleted)"},
    )


def _summary(plan: TickPlan, listed: int, runs: int) -> str:
    where = "end of the container" if plan.cursor.token is None else "more to list"
    return (
        f"listed {listed} blobs ({where}): {len(plan.changed)} new or changed, "
        f"{len(plan.deleted)} deleted, {plan.unsettled} still settling; {runs} runs requested"
    )
