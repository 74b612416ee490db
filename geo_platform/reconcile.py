"""``geo-platform reconcile`` and ``geo-platform backfill``: bring the platform in line
with bronze, or redo a whole collection, in the same batched runs as ingest."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from geo_platform.backends import blob_store as profile_blob_store
from geo_platform.backends import stac_catalog as profile_catalog
from geo_platform.defs.raster.partitions import RASTER_PARTITIONS
from geo_platform.defs.raster.state import raster_state
from geo_platform.lib.blob_scan import listing
from geo_platform.lib.partition_keys import blob_key_problem, is_raster_key
from geo_platform.lib.raster.options import raster_options
from geo_platform.lib.reconcile import ReconcilePlan, plan_reconcile
from geo_platform.processing.raster import remove_raster
from geo_platform.resources.blob_store import BRONZE
from geo_platform.runs import RasterOutcome, RasterRunner
from geo_platform.settings import PlatformSettings, get_run_settings


@dataclass
class ReconcileReport:
    plan: ReconcilePlan
    outcomes: list[RasterOutcome] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def reconcile(
    settings: PlatformSettings,
    *,
    collection: str | None = None,
    dry_run: bool = False,
    batch_size: int | None = None,
    verbose: bool = False,
    report: Callable[[RasterOutcome], None] = lambda outcome: None,
) -> ReconcileReport:
    """Run what is new or changed in bronze (or was never finished, or lost its item),
    remove what was deleted from it, and leave the rest alone."""
    store, catalog = profile_blob_store(settings), profile_catalog(settings)
    runner = RasterRunner(settings, verbose=verbose, via="reconcile")
    blobs = list(listing(store, BRONZE))
    registered = runner.instance.get_dynamic_partitions(RASTER_PARTITIONS)
    keys = sorted({b.key for b in blobs} | set(registered))
    plan = plan_reconcile(
        blobs,
        registered,
        raster_state(runner.instance, keys),
        catalog.item_ids,
        now=dt.datetime.now(dt.UTC),
        settle=get_run_settings().settle,
        collection=collection,
        made_with=lambda name: raster_options(name, runner.collections).made_with(),
    )
    result = ReconcileReport(plan)
    if dry_run:
        return result
    for key in plan.to_remove:
        if remove_raster(key, store, catalog):
            result.removed.append(key)
    runner.forget(result.removed)

    def done(outcome: RasterOutcome) -> None:
        result.outcomes.append(outcome)
        report(outcome)

    runner.run(
        dict(plan.to_run),
        output_tier=None,
        batch_size=batch_size or get_run_settings().batch_size,
        done=done,
    )
    return result


def backfill(
    settings: PlatformSettings,
    *,
    collection: str,
    output_tier: str | None = None,
    batch_size: int | None = None,
    verbose: bool = False,
    report: Callable[[RasterOutcome], None] = lambda outcome: None,
) -> list[RasterOutcome]:
    """Run every raster of ``collection`` in bronze again, whatever its state (after a
    change of its ``output_tier``, say)."""
    store = profile_blob_store(settings)
    runner = RasterRunner(settings, verbose=verbose, via="backfill")
    prefix = f"{collection}/"
    etags = {b.key: b.etag for b in listing(store, BRONZE) if b.key.startswith(prefix)}
    etags = {k: e for k, e in etags.items() if is_raster_key(k) and not blob_key_problem(k)}
    outcomes: list[RasterOutcome] = []

    def done(outcome: RasterOutcome) -> None:
        outcomes.append(outcome)
        report(outcome)

    runner.run(
        etags,
        output_tier=output_tier,
        batch_size=batch_size or get_run_settings().batch_size,
        done=done,
    )
    return outcomes
