"""Run partitions of the raster assets on the Dagster instance, in batches, from the
command line: what ``ingest``, ``reconcile`` and ``backfill`` share.

Each batch is one in-process run over a range of contiguous partitions (they show up
in the UI like any other run); each raster's outcome is read back from the run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from geo_platform.defs.bronze import observation
from geo_platform.defs.raster.assets import (
    BRONZE_RASTER,
    FAILED_RASTERS,
    STAC_ITEM,
    TIER_ASSETS,
    VALIDATION,
)
from geo_platform.defs.raster.partitions import RASTER_PARTITIONS
from geo_platform.defs.raster.sensors import COLLECTION_TAG
from geo_platform.defs.run_worker import WORKER_TAG, fail_dead_runs, this_worker
from geo_platform.instance import add_partitions, get_instance
from geo_platform.lib.collections_config import load_collections_config, requested_tiers
from geo_platform.lib.partition_keys import contiguous_batches
from geo_platform.lib.stac.ids import collection_id
from geo_platform.resources.blob_store import BRONZE
from geo_platform.settings import PlatformSettings


@dataclass
class RasterOutcome:
    """How one raster went: ``ok``, or the reason it failed; its materializations'
    metadata by asset."""

    blob_key: str
    ok: bool
    message: str
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: Path | None = None


class RasterRunner:
    """The instance and the raster job, loaded once for every batch of a command."""

    def __init__(self, settings: PlatformSettings, *, verbose: bool = False, via: str = "cli"):
        from geo_platform.backends import dagster_resources
        from geo_platform.defs.raster.assets import bronze_raster, raster_pipeline
        from geo_platform.defs.raster.jobs import raster_ingest_job

        self.settings = settings
        self.instance = get_instance(settings)
        fail_dead_runs(self.instance)
        # The raster domain alone, not the whole code location: the other domains'
        # imports (and definitions) would only slow every ingest down.
        definitions = dg.Definitions(
            assets=[bronze_raster, raster_pipeline],
            jobs=[raster_ingest_job],
            resources=dagster_resources(settings),
        )
        self.job = definitions.resolve_job_def("raster_ingest")
        self.collections = load_collections_config(settings.collections_path)
        self.via = via
        level = "INFO" if verbose else "CRITICAL"
        self.loggers = {"console": {"config": {"log_level": level}}}

    def run(
        self,
        etags: dict[str, str],
        *,
        output_tier: str | None,
        batch_size: int,
        done: Callable[[RasterOutcome], None],
    ) -> None:
        """Register and observe the blob versions ``etags`` (key -> ETag), then run them
        in batches of contiguous partitions, a collection at a time."""
        add_partitions(self.instance, RASTER_PARTITIONS, etags)
        # Observed before any run: the bronze sensor then knows these versions are
        # taken care of and leaves them alone, whatever happens to the runs.
        for key, etag in etags.items():
            self.instance.report_runless_asset_event(observation(BRONZE_RASTER, key, etag))
        ordered = self.instance.get_dynamic_partitions(RASTER_PARTITIONS)
        by_collection: dict[str, set[str]] = defaultdict(set)
        for key in etags:
            by_collection[collection_id(key)].add(key)
        for collection, keys in sorted(by_collection.items()):
            selection, run_config = self._plan(collection, output_tier)
            for batch in contiguous_batches(ordered, keys, batch_size):
                result = self._execute(batch, collection, selection, run_config)
                for outcome in outcomes_of(result, batch):
                    done(outcome)

    def _plan(
        self, collection: str, output_tier: str | None
    ) -> tuple[list[dg.AssetKey], dict[str, Any]]:
        tiers = requested_tiers(collection, output_tier, self.collections)
        run_config: dict[str, Any] = {"loggers": self.loggers}
        if output_tier:
            run_config["ops"] = {"raster_pipeline": {"config": {"output_tier": output_tier}}}
        return [VALIDATION, *(TIER_ASSETS[t] for t in tiers), STAC_ITEM], run_config

    def _execute(
        self,
        batch: list[str],
        collection: str,
        selection: list[dg.AssetKey],
        run_config: dict[str, Any],
    ) -> dg.ExecuteInProcessResult:
        return self.job.execute_in_process(
            run_config=run_config,
            instance=self.instance,
            asset_selection=selection,
            raise_on_error=False,
            tags={
                # Before the run's first step: a process killed even then is found.
                WORKER_TAG: this_worker(),
                "dagster/asset_partition_range_start": batch[0],
                "dagster/asset_partition_range_end": batch[-1],
                "geo_platform/source": f"{BRONZE}/{collection}/ ({len(batch)} files)",
                "geo_platform/via": self.via,
                COLLECTION_TAG: collection,
            },
        )

    def forget(self, keys: Sequence[str]) -> None:
        """Drop the partitions of rasters removed from bronze."""
        for key in keys:
            self.instance.delete_dynamic_partition(RASTER_PARTITIONS, key)


def outcomes_of(result: dg.ExecuteInProcessResult, batch: list[str]) -> list[RasterOutcome]:
    """One outcome per key of the run: its materializations, or why it failed."""
    metadata: dict[str, dict[str, dict[str, Any]]] = {key: {} for key in batch}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        partition = materialization.partition
        if partition in metadata and event.asset_key is not None:
            metadata[partition][event.asset_key.to_user_string()] = {
                name: value.value for name, value in materialization.metadata.items()
            }
    failed: dict[str, str] = {}
    step_error = None
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data:
            user = event.step_failure_data.user_failure_data
            if user and FAILED_RASTERS in user.metadata:
                failed.update(user.metadata[FAILED_RASTERS].value)  # type: ignore[arg-type]
            else:
                step_error = error_message(event)
    outcomes = []
    for key in batch:
        if key in failed:
            outcomes.append(RasterOutcome(key, False, failed[key]))
        elif "stac_item" in metadata[key]:
            outcomes.append(RasterOutcome(key, True, "ok", metadata[key]))
        else:
            reason = step_error or "the run ended before this raster was processed"
            outcomes.append(RasterOutcome(key, False, f"{BRONZE}/{key}: {reason}"))
    return outcomes


def error_message(event: Any) -> str:
    data = event.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return str(data.user_failure_data.description)
    error = data.error
    while error and error.cause:
        error = error.cause
    return error.message.strip() if error else "step failed"
