"""Materialize one resolution of ``h3_grid`` from the command line: its partitions in one
in-process run on the instance (it shows up in the UI like any other run)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from geo_platform.lib.h3.grid import grid_partition_keys, parse_grid_partition
from geo_platform.lib.partition_keys import contiguous_batches
from geo_platform.settings import PlatformSettings, get_h3_settings

if TYPE_CHECKING:
    import dagster as dg


@dataclass
class GridOutcome:
    done: list[str]
    failed: dict[str, str]  # partition -> why
    skipped: int  # already materialized (with --missing)


def materialize_grid(
    settings: PlatformSettings, resolution: int, *, missing: bool = False, verbose: bool = False
) -> GridOutcome:
    """The partitions of ``resolution`` (with ``missing``: those never materialized or
    whose last run failed), in as few runs as their order allows."""
    import dagster as dg

    from geo_platform.backends import dagster_resources
    from geo_platform.defs.h3.assets import H3_GRID, build_h3_grid
    from geo_platform.defs.run_worker import WORKER_TAG, fail_dead_runs, this_worker
    from geo_platform.instance import get_instance

    instance = get_instance(settings)
    fail_dead_runs(instance)
    ordered = grid_partition_keys(max(resolution, get_h3_settings().max_resolution))
    keys = [key for key in ordered if parse_grid_partition(key)[0] == resolution]
    wanted = set(keys)
    if missing:
        wanted -= instance.get_materialized_partitions(H3_GRID)
    job = dg.Definitions(
        assets=[build_h3_grid(max(resolution, get_h3_settings().max_resolution))],
        resources=dagster_resources(settings),
    ).resolve_implicit_global_asset_job_def()
    level = "INFO" if verbose else "CRITICAL"
    outcome = GridOutcome(done=[], failed={}, skipped=len(keys) - len(wanted))
    for batch in contiguous_batches(ordered, wanted, len(ordered)):
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": level}}}},
            tags={
                WORKER_TAG: this_worker(),
                "dagster/asset_partition_range_start": batch[0],
                "dagster/asset_partition_range_end": batch[-1],
                "geo_platform/via": "cli",
            },
        )
        done = {
            event.partition
            for event in result.get_asset_materialization_events()
            if event.partition is not None
        }
        outcome.done += [key for key in batch if key in done]
        reason = _failure(result)
        outcome.failed |= {key: reason for key in batch if key not in done}
    return outcome


def _failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error is not None:
            return event.step_failure_data.error.message.strip().splitlines()[0]
    return "not materialized"
