"""Copy local files into bronze and materialize their partitions on the Dagster instance.

What ``geo-platform ingest`` and the demo run: each file is its own run, so one bad
file fails alone, with its reason, and the runs are in the UI like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from geo_platform.backends import blob_store as profile_blob_store
from geo_platform.defs.raster.assets import TIER_ASSETS
from geo_platform.defs.raster.jobs import INGEST_ASSETS
from geo_platform.defs.raster.partitions import RASTER_PARTITIONS
from geo_platform.defs.raster.sensors import COLLECTION_TAG
from geo_platform.instance import get_instance
from geo_platform.lib.collections_config import load_collections_config, requested_tiers
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.partition_keys import is_raster_key, partition_key_problem
from geo_platform.lib.vector.formats import is_vector_key
from geo_platform.resources.blob_store import BRONZE, SHA256_METADATA, BlobStore
from geo_platform.settings import PlatformSettings


@dataclass
class IngestOutcome:
    source: Path
    blob_key: str
    ok: bool
    message: str
    metadata: dict[str, dict] = field(default_factory=dict)


def collect_files(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """``(file, name inside the collection)``; folders contribute their raster and vector
    files."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path).as_posix()
                if is_raster_key(relative) or is_vector_key(relative):
                    found.append((file, relative))
        else:
            found.append((path, path.name))
    return found


def check_collection_name(collection: str) -> str:
    if not collection or "/" in collection or partition_key_problem(collection):
        raise ValueError(f"invalid collection name {collection!r}: use one path segment")
    return collection


def ingest(
    paths: Iterable[Path],
    *,
    collection: str,
    output_tier: str | None,
    settings: PlatformSettings,
    report: Callable[[IngestOutcome], None] = lambda outcome: None,
    vector_tiles: bool = False,
) -> list[IngestOutcome]:
    """Ingest every file; ``report`` is called as each one finishes."""
    check_collection_name(collection)
    files = []
    for source, name in collect_files(paths):
        key = f"{collection}/{name}"
        files.append((source, key, partition_key_problem(key) if source.is_file() else None))
    # Vector files go their own way (geo_platform.vector_ingest); the rest as rasters.
    vectors = [f for f in files if is_vector_key(f[1])]
    files = [f for f in files if not is_vector_key(f[1])]
    outcomes: list[IngestOutcome] = []
    if vectors:
        from geo_platform.vector_ingest import ingest_vectors

        outcomes += ingest_vectors(vectors, settings=settings, tiles=vector_tiles, report=report)
    if not files:
        return outcomes
    blob_store = profile_blob_store(settings)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bronze-upload") as uploader:
        # The first file is hashed and copied into bronze while Dagster loads the
        # definitions and the instance (~1.5 s of imports on one core); later files
        # are uploaded just before their run, so bronze never runs ahead of the CLI.
        first = next((f for f in files if f[0].is_file() and not f[2]), None)
        early = uploader.submit(_upload_if_changed, blob_store, *first[:2]) if first else None
        return outcomes + _run_all(
            files, early, blob_store, collection, output_tier, settings, report
        )


def _run_all(
    files: list[tuple[Path, str, str | None]],
    early: Future[None] | None,
    blob_store: BlobStore,
    collection: str,
    output_tier: str | None,
    settings: PlatformSettings,
    report: Callable[[IngestOutcome], None],
) -> list[IngestOutcome]:
    from geo_platform.definitions import defs as load_defs

    instance = get_instance(settings)
    definitions = load_defs()
    job = definitions.resolve_job_def("raster_ingest")
    collections = load_collections_config(settings.collections_path)
    tiers = requested_tiers(collection, output_tier, collections)
    selection = [INGEST_ASSETS[0], *(TIER_ASSETS[t] for t in tiers), INGEST_ASSETS[-1]]
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    if output_tier:
        run_config["ops"] = {"cog_tiers": {"config": {"output_tier": output_tier}}}

    outcomes = []
    for source, key, problem in files:
        if not source.is_file():
            outcome = IngestOutcome(source, key, False, f"{source}: no such file")
        elif problem:
            outcome = IngestOutcome(source, key, False, f"{source}: {problem}")
        else:
            try:
                if early is not None:
                    upload, early = early, None
                    upload.result()
                else:
                    _upload_if_changed(blob_store, source, key)
            except OSError as e:
                outcome = IngestOutcome(source, key, False, f"{source}: cannot copy to bronze: {e}")
            else:
                outcome = _run_one(job, instance, run_config, selection, source, key, collection)
        report(outcome)
        outcomes.append(outcome)
    if any(o.ok for o in outcomes):
        summary = definitions.resolve_implicit_global_asset_job_def()
        summary.execute_in_process(
            run_config={"loggers": run_config["loggers"]},
            instance=instance,
            asset_selection=[dg.AssetKey("collection_summary")],
        )
    return outcomes


def _run_one(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    run_config: dict,
    selection: list[dg.AssetKey],
    source: Path,
    key: str,
    collection: str,
) -> IngestOutcome:
    instance.add_dynamic_partitions(RASTER_PARTITIONS, [key])
    result = job.execute_in_process(
        run_config=run_config,
        instance=instance,
        partition_key=key,
        asset_selection=selection,
        raise_on_error=False,
        tags={
            "geo_platform/source": f"{BRONZE}/{key}",
            "geo_platform/via": "cli",
            COLLECTION_TAG: collection,
        },
    )
    return _outcome(source, key, result)


def _upload_if_changed(blob_store: BlobStore, source: Path, key: str) -> None:
    """Leave an identical bronze blob alone: its modification time dates the item."""
    digest = sha256_file(source)
    try:
        existing = blob_store.info(BRONZE, key).metadata.get(SHA256_METADATA)
    except FileNotFoundError:
        existing = None
    if existing != digest:
        blob_store.upload_file(source, BRONZE, key, metadata={SHA256_METADATA: digest})


def _outcome(source: Path, key: str, result: dg.ExecuteInProcessResult) -> IngestOutcome:
    if result.success:
        metadata = {
            event.asset_key.to_user_string(): {
                k: v.value
                for k, v in event.step_materialization_data.materialization.metadata.items()
            }
            for event in result.get_asset_materialization_events()
            if event.asset_key is not None
        }
        return IngestOutcome(source, key, True, "ok", metadata)
    return IngestOutcome(source, key, False, _failure_message(result))


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            data = event.step_failure_data
            if data.user_failure_data and data.user_failure_data.description:
                return data.user_failure_data.description
            error = data.error
            while error and error.cause:
                error = error.cause
            return error.message.strip() if error else "step failed"
    return "run failed"
