"""The platform's scheduled backfill: a nightly reconciliation of bronze."""

import datetime as dt

import dagster as dg

from geo_platform.defs.bronze import observation
from geo_platform.defs.raster.assets import BRONZE_RASTER
from geo_platform.defs.raster.jobs import raster_ingest_job
from geo_platform.defs.raster.partitions import RASTER_PARTITIONS
from geo_platform.defs.raster.sensors import ingest_requests
from geo_platform.defs.raster.state import raster_state
from geo_platform.instance import add_partitions
from geo_platform.lib.blob_scan import listing
from geo_platform.lib.collections_config import load_collections_config
from geo_platform.lib.raster.options import raster_options
from geo_platform.lib.reconcile import plan_reconcile
from geo_platform.resources.blob_store import BRONZE, BlobStore
from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.settings import get_platform_settings, get_run_settings


@dg.schedule(
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    job=raster_ingest_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def nightly_reconcile(
    context: dg.ScheduleEvaluationContext,
    blob_store: BlobStore,
    stac_catalog: dg.ResourceParam[StacCatalog],
) -> list[dg.RunRequest] | dg.SkipReason:
    """Every night, bronze against what is materialized and cataloged: runs what is new,
    changed, never finished or missing its item (what `geo-platform reconcile` does by
    hand). Blobs deleted from bronze are cleaned up by the bronze_rasters sensor, which
    finds them on every pass over the container (a schedule targets one job)."""
    instance = context.instance
    collections = load_collections_config(get_platform_settings().collections_path)
    blobs = list(listing(blob_store, BRONZE))
    registered = instance.get_dynamic_partitions(RASTER_PARTITIONS)
    keys = sorted({b.key for b in blobs} | set(registered))
    plan = plan_reconcile(
        blobs,
        registered,
        raster_state(instance, keys),
        stac_catalog.item_ids,
        now=dt.datetime.now(dt.UTC),
        settle=get_run_settings().settle,
        made_with=lambda name: raster_options(name, collections).made_with(),
    )
    context.log.info(", ".join(f"{what}: {n}" for what, n in plan.counts().items() if n))
    add_partitions(instance, RASTER_PARTITIONS, (key for key, _ in plan.to_run))
    # Observed now, as the sensor does: neither it nor tomorrow's run asks for them again.
    for key, etag in plan.to_run:
        instance.report_runless_asset_event(observation(BRONZE_RASTER, key, etag))
    ordered = list(instance.get_dynamic_partitions(RASTER_PARTITIONS))
    requests = ingest_requests(plan.to_run, ordered)
    return requests or dg.SkipReason("nothing to run: bronze and the platform agree")
