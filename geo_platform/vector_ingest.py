"""``geo-platform ingest`` for vector files: copy into bronze, then one run per file of
``vector_table`` and ``vector_item`` on the instance (tiles follow as their own
materialization: ``--vector-tiles``, or the automation sensor under ``make dev``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from geo_platform.backends import blob_store as profile_blob_store
from geo_platform.defs.vector.jobs import VECTOR_INGEST_ASSETS
from geo_platform.defs.vector.partitions import VECTOR_PARTITIONS
from geo_platform.ingest import IngestOutcome, _outcome, _upload_if_changed
from geo_platform.instance import get_instance
from geo_platform.settings import PlatformSettings

_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def ingest_vectors(
    files: list[tuple[Path, str, str | None]],
    *,
    settings: PlatformSettings,
    tiles: bool = False,
    report: Callable[[IngestOutcome], None] = lambda outcome: None,
) -> list[IngestOutcome]:
    """``(local file, blob key, problem with the key)`` each: upload, run, report."""
    from geo_platform.definitions import defs as load_defs

    blob_store = profile_blob_store(settings)
    instance = get_instance(settings)
    definitions = load_defs()
    job = definitions.resolve_job_def("vector_ingest")
    tiles_job = definitions.resolve_job_def("vector_tiles_job") if tiles else None
    outcomes = []
    for source, key, problem in files:
        if not source.is_file():
            outcome = IngestOutcome(source, key, False, f"{source}: no such file")
        elif problem:
            outcome = IngestOutcome(source, key, False, f"{source}: {problem}")
        else:
            try:
                _upload_if_changed(blob_store, source, key)
            except OSError as e:
                outcome = IngestOutcome(source, key, False, f"{source}: cannot copy to bronze: {e}")
            else:
                outcome = _run(job, instance, source, key, VECTOR_INGEST_ASSETS)
                if outcome.ok and tiles_job is not None:
                    tiled = _run(tiles_job, instance, source, key, [dg.AssetKey("vector_tiles")])
                    outcome.metadata.update(tiled.metadata)
                    if not tiled.ok:
                        outcome = IngestOutcome(source, key, False, f"tiles: {tiled.message}")
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def _run(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    source: Path,
    key: str,
    selection: list[dg.AssetKey],
) -> IngestOutcome:
    instance.add_dynamic_partitions(VECTOR_PARTITIONS, [key])
    result = job.execute_in_process(
        run_config=_QUIET,
        instance=instance,
        partition_key=key,
        asset_selection=selection,
        raise_on_error=False,
        tags={"geo_platform/source": f"bronze/{key}", "geo_platform/via": "cli"},
    )
    return _outcome(source, key, result)
