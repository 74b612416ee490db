"""``geo-platform ingest`` for vector files: copy into bronze, then one run per file of
``vector_table`` and ``vector_item`` on the instance (tiles follow as their own
materialization: ``--vector-tiles``, or the automation sensor under ``make dev``).

The copy into bronze runs while the run loads the file: the run is told where the local
file is (its size, modification time and SHA-256, as tags), reads it there instead of
downloading the blob again, and records the load only once bronze holds that very
content. A user's file is never read twice over the network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from geo_platform.backends import dagster_resources
from geo_platform.defs.bronze import observation
from geo_platform.defs.run_worker import WORKER_TAG, this_worker
from geo_platform.defs.vector.assets import (
    BRONZE_VECTOR,
    LOCAL_COPY_TAG,
    PENDING_UPLOADS,
    bronze_vector,
    local_copy_tag,
    vector_item,
    vector_table,
    vector_tiles,
)
from geo_platform.defs.vector.jobs import VECTOR_INGEST_ASSETS, vector_ingest_job, vector_tiles_job
from geo_platform.defs.vector.partitions import VECTOR_PARTITIONS
from geo_platform.ingest import BronzeCopy, IngestOutcome
from geo_platform.instance import add_partitions, get_instance
from geo_platform.resources.blob_store import BRONZE
from geo_platform.settings import PlatformSettings

_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def ingest_vectors(
    files: dict[str, Path],
    copies: dict[str, BronzeCopy],
    *,
    settings: PlatformSettings,
    tiles: bool = False,
    report: Callable[[IngestOutcome], None] = lambda outcome: None,
) -> None:
    """Blob key -> local file, each: run (while its copy into bronze, already begun,
    goes on), observe, report."""
    instance = get_instance(settings)
    # The vector domain alone, as for rasters (geo_platform.runs).
    definitions = dg.Definitions(
        assets=[bronze_vector, vector_table, vector_item, vector_tiles],
        jobs=[vector_ingest_job, vector_tiles_job],
        resources=dagster_resources(settings),
    )
    job = definitions.resolve_job_def(vector_ingest_job.name)
    tiles_job = definitions.resolve_job_def(vector_tiles_job.name) if tiles else None
    add_partitions(instance, VECTOR_PARTITIONS, files)
    for key, source in files.items():
        outcome = _load(job, instance, copies[key], source, key)
        if outcome.ok and tiles_job is not None:
            tiled = _run(tiles_job, instance, source, key, [dg.AssetKey("vector_tiles")])
            outcome.metadata.update(tiled.metadata)
            if not tiled.ok:
                outcome = IngestOutcome(source, key, False, f"tiles: {tiled.message}")
        report(outcome)


def _load(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    copy: BronzeCopy,
    source: Path,
    key: str,
) -> IngestOutcome:
    """The run reads the local file while the upload into bronze goes on."""
    try:
        digest = copy.sha256.result()
    except OSError as e:
        return IngestOutcome(source, key, False, f"{source}: cannot read: {e}")
    PENDING_UPLOADS[key] = copy.blob
    tags = {LOCAL_COPY_TAG: local_copy_tag(source, digest)}
    try:
        outcome = _run(job, instance, source, key, VECTOR_INGEST_ASSETS, tags)
    finally:
        PENDING_UPLOADS.pop(key, None)
    try:
        blob = copy.blob.result()
    except OSError as e:
        return IngestOutcome(source, key, False, f"{source}: cannot copy to bronze: {e}")
    # Observed once bronze holds it: the bronze sensor leaves this version alone.
    instance.report_runless_asset_event(observation(BRONZE_VECTOR, key, blob.etag))
    return outcome


def _run(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    source: Path,
    key: str,
    selection: list[dg.AssetKey],
    tags: dict[str, str] | None = None,
) -> IngestOutcome:
    result = job.execute_in_process(
        run_config=_QUIET,
        instance=instance,
        partition_key=key,
        asset_selection=selection,
        raise_on_error=False,
        tags={
            "geo_platform/source": f"{BRONZE}/{key}",
            "geo_platform/via": "cli",
            WORKER_TAG: this_worker(),
            **(tags or {}),
        },
    )
    if not result.success:
        return IngestOutcome(source, key, False, _failure_message(result))
    metadata = {
        event.asset_key.to_user_string(): {
            k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
        if event.asset_key is not None
    }
    return IngestOutcome(source, key, True, "ok", metadata)


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    # The raster runner's module (and the raster assets it imports) only on a failure.
    from geo_platform.runs import error_message

    for event in result.all_events:
        if event.is_step_failure:
            return error_message(event)
    return "run failed"
