"""Run partitions of the raster assets on the Dagster instance, in batches, from the
command line: what ``ingest``, ``reconcile`` and ``backfill`` share.

Each batch is one in-process run over a range of contiguous partitions (they show up
in the UI like any other run); each raster's outcome is read back from the run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from geo_platform.claims import Claims, open_claims
from geo_platform.defs.bronze import SOURCE_ETAG, observation
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
    # The run of another command that was already running this raster, and whose outcome
    # this is: the raster was not run twice.
    by_run: str | None = None


class RasterRunner:
    """The instance and the raster job, loaded once for every batch of a command."""

    def __init__(
        self,
        settings: PlatformSettings,
        *,
        verbose: bool = False,
        via: str = "cli",
        notice: Callable[[str], None] = lambda message: None,
    ):
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
            resources=dagster_resources(settings, warehouse=False),
        )
        self.job = definitions.resolve_job_def("raster_ingest")
        self.collections = load_collections_config(settings.collections_path)
        self.via = via
        self.notice = notice
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
        in batches of contiguous partitions, a collection at a time.

        A raster that another command is already running (it holds the key's claim) is
        not run again: once that command is done with it, its outcome is this one's; if
        its run did not finish the raster, or made it from another version, it is run
        here."""
        add_partitions(self.instance, RASTER_PARTITIONS, etags)
        # Observed before any run: the bronze sensor then knows these versions are
        # taken care of and leaves them alone, whatever happens to the runs.
        for key, etag in etags.items():
            self.instance.report_runless_asset_event(observation(BRONZE_RASTER, key, etag))
        claims = open_claims(self.settings, this_worker())
        try:
            todo = dict(etags)
            while todo:
                taken = self._run_claimed(todo, claims, output_tier, batch_size, done)
                todo = {}
                # Waited for with no claim held: two commands waiting on each other's
                # keys would wait forever.
                for key, holder in taken.items():
                    claims.wait(key)
                    outcome = self._their_outcome(key, etags[key], holder)
                    if outcome is None:
                        todo[key] = etags[key]
                    else:
                        done(outcome)
        finally:
            claims.close()

    def _run_claimed(
        self,
        etags: dict[str, str],
        claims: Claims,
        output_tier: str | None,
        batch_size: int,
        done: Callable[[RasterOutcome], None],
    ) -> dict[str, str]:
        """Run the keys this process can claim; the others, with their holders."""
        ordered = self.instance.get_dynamic_partitions(RASTER_PARTITIONS)
        by_collection: dict[str, set[str]] = defaultdict(set)
        for key in etags:
            by_collection[collection_id(key)].add(key)
        taken: dict[str, str] = {}
        for collection, keys in sorted(by_collection.items()):
            selection, run_config = self._plan(collection, output_tier)
            for batch in contiguous_batches(ordered, keys, batch_size):
                busy = claims.claim(batch)
                for key, holder in busy.items():
                    self.notice(
                        f"{BRONZE}/{key}: already being ingested by {self._describe(holder, key)}"
                        "; waiting for it"
                    )
                taken.update(busy)
                mine = [key for key in batch if key not in busy]
                try:
                    # A range covers every key between its ends: not those of others.
                    for part in contiguous_batches(batch, mine, batch_size):
                        result = self._execute(part, collection, selection, run_config)
                        for outcome in outcomes_of(result, part):
                            done(outcome)
                finally:
                    claims.release_all(mine)
        return taken

    def _holder_runs(self, holder: str, key: str) -> list[dg.DagsterRun]:
        """The runs of the process ``holder`` whose range covers ``key``, newest first."""
        if not holder:
            return []
        ordered = self.instance.get_dynamic_partitions(RASTER_PARTITIONS)
        position = {k: i for i, k in enumerate(ordered)}
        covering = []
        for run in self.instance.get_runs(filters=dg.RunsFilter(tags={WORKER_TAG: holder})):
            start = run.tags.get("dagster/asset_partition_range_start")
            end = run.tags.get("dagster/asset_partition_range_end")
            if start in position and end in position and key in position:
                if position[start] <= position[key] <= position[end]:
                    covering.append(run)
        return covering

    def _describe(self, holder: str, key: str) -> str:
        runs = self._holder_runs(holder, key)
        if runs:
            return f"run {runs[0].run_id}"
        if holder:
            host, pid, _ = holder.rsplit(":", 2)
            return f"process {pid} on {host}"
        return "another process"

    def _their_outcome(self, key: str, etag: str, holder: str) -> RasterOutcome | None:
        """What the holder's last run covering ``key`` made of this version of it; None
        when it did not finish it (killed, say) or saw another version."""
        for run in self._holder_runs(holder, key)[:1]:
            events = [
                entry.dagster_event
                for entry in self.instance.all_logs(run.run_id)
                if entry.dagster_event is not None
            ]
            outcome = recorded_outcomes(events, [key]).get(key)
            if outcome is None:
                return None
            validation = outcome.metadata.get(VALIDATION.to_user_string(), {})
            if outcome.ok and validation.get(SOURCE_ETAG) != etag:
                return None
            outcome.by_run = run.run_id
            return outcome
        return None

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
    recorded = recorded_outcomes(result.all_events, batch)
    step_error = next(
        (
            error_message(event)
            for event in result.all_events
            if event.is_step_failure and not _failed_rasters(event)
        ),
        None,
    )
    reason = step_error or "the run ended before this raster was processed"
    return [
        recorded.get(key) or RasterOutcome(key, False, f"{BRONZE}/{key}: {reason}") for key in batch
    ]


def recorded_outcomes(events: Iterable[Any], keys: list[str]) -> dict[str, RasterOutcome]:
    """The outcomes a run's events record for ``keys``: an item made, or the raster's
    reason for failing; keys it has neither for are left out."""
    metadata: dict[str, dict[str, dict[str, Any]]] = {key: {} for key in keys}
    failed: dict[str, str] = {}
    for event in events:
        if event.is_step_materialization:
            materialization = event.step_materialization_data.materialization
            partition = materialization.partition
            if partition in metadata and event.asset_key is not None:
                metadata[partition][event.asset_key.to_user_string()] = {
                    name: value.value for name, value in materialization.metadata.items()
                }
        elif event.is_step_failure:
            failed.update(_failed_rasters(event))
    outcomes = {}
    for key in keys:
        if key in failed:
            outcomes[key] = RasterOutcome(key, False, failed[key])
        elif STAC_ITEM.to_user_string() in metadata[key]:
            outcomes[key] = RasterOutcome(key, True, "ok", metadata[key])
    return outcomes


def _failed_rasters(event: Any) -> dict[str, str]:
    user = event.step_failure_data.user_failure_data if event.step_failure_data else None
    if user and FAILED_RASTERS in user.metadata:
        return dict(user.metadata[FAILED_RASTERS].value)
    return {}


def error_message(event: Any) -> str:
    data = event.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return str(data.user_failure_data.description)
    error = data.error
    while error and error.cause:
        error = error.cause
    return error.message.strip() if error else "step failed"
