"""Copy local files into bronze and materialize them on the Dagster instance.

What ``geo-platform ingest`` and the demo run. Files are uploaded to bronze, registered
as partitions, and run in batches: one Dagster run per batch of contiguous partitions
(``GEO_PLATFORM_RUN_BATCH_SIZE``, default 100), each raster isolated inside its run, so
that one bad file fails alone, with its reason. The runs are in the UI like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geo_platform.backends import blob_store as profile_blob_store
from geo_platform.lib.collections_config import load_collections_config, requested_tiers
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.partition_keys import (
    contiguous_batches,
    is_raster_key,
    partition_key_problem,
)
from geo_platform.resources.blob_store import BRONZE, SHA256_METADATA, BlobStore
from geo_platform.settings import PlatformSettings, get_run_settings

if TYPE_CHECKING:
    import dagster as dg

# Bronze uploads at once: hashing and copying release the GIL.
_UPLOAD_THREADS = 4


@dataclass
class IngestOutcome:
    source: Path
    blob_key: str
    ok: bool
    message: str
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)


def collect_files(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """``(file, name inside the collection)``; folders contribute their raster files."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path).as_posix()
                if is_raster_key(relative):
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
    batch_size: int | None = None,
    verbose: bool = False,
) -> list[IngestOutcome]:
    """Ingest every file; ``report`` is called for each as its batch finishes."""
    check_collection_name(collection)
    outcomes: list[IngestOutcome] = []

    def done(outcome: IngestOutcome) -> None:
        report(outcome)
        outcomes.append(outcome)

    files: dict[str, Path] = {}
    for source, name in collect_files(paths):
        key = f"{collection}/{name}"
        if not source.is_file():
            done(IngestOutcome(source, key, False, f"{source}: no such file"))
        elif problem := partition_key_problem(key):
            done(IngestOutcome(source, key, False, f"{source}: {problem}"))
        else:
            files[key] = source
    if not files:
        return outcomes
    store = profile_blob_store(settings)
    with ThreadPoolExecutor(_UPLOAD_THREADS, thread_name_prefix="bronze-upload") as uploader:
        # Uploads start while Dagster's imports and the instance load (~1.5 s).
        uploads = {
            key: uploader.submit(_upload_if_changed, store, source, key)
            for key, source in files.items()
        }
        runner = _Runner(settings, collection, output_tier, verbose)
        uploaded = []
        for key, upload in uploads.items():
            if error := _failed(upload):
                message = f"{files[key]}: cannot copy to bronze: {error}"
                done(IngestOutcome(files[key], key, False, message))
            else:
                uploaded.append(key)
    runner.run(uploaded, files, batch_size or get_run_settings().batch_size, done)
    return outcomes


def _failed(upload: Future[None]) -> str | None:
    error = upload.exception()
    if error is None:
        return None
    if isinstance(error, OSError):
        return str(error)
    raise error


def _upload_if_changed(blob_store: BlobStore, source: Path, key: str) -> None:
    """Leave an identical bronze blob alone: its modification time dates the item."""
    digest = sha256_file(source)
    try:
        existing = blob_store.info(BRONZE, key).metadata.get(SHA256_METADATA)
    except FileNotFoundError:
        existing = None
    if existing != digest:
        blob_store.upload_file(source, BRONZE, key, metadata={SHA256_METADATA: digest})


class _Runner:
    """Runs partitions of the raster assets on the instance, a batch per run. Collection
    extents grow as items are written; the ``collection_summary`` report is Dagster's
    automation's to refresh."""

    def __init__(
        self, settings: PlatformSettings, collection: str, output_tier: str | None, verbose: bool
    ) -> None:
        from geo_platform.definitions import defs as load_defs
        from geo_platform.defs.raster.assets import STAC_ITEM, TIER_ASSETS, VALIDATION
        from geo_platform.instance import get_instance

        self.instance = get_instance(settings)
        self.definitions = load_defs()
        self.job = self.definitions.resolve_job_def("raster_ingest")
        self.collection = collection
        tiers = requested_tiers(
            collection, output_tier, load_collections_config(settings.collections_path)
        )
        self.selection = [VALIDATION, *(TIER_ASSETS[t] for t in tiers), STAC_ITEM]
        level = "INFO" if verbose else "CRITICAL"
        self.run_config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": level}}}}
        if output_tier:
            self.run_config["ops"] = {"raster_pipeline": {"config": {"output_tier": output_tier}}}

    def run(
        self,
        keys: Sequence[str],
        files: dict[str, Path],
        batch_size: int,
        done: Callable[[IngestOutcome], None],
    ) -> None:
        from geo_platform.defs.raster.partitions import RASTER_PARTITIONS

        known = set(self.instance.get_dynamic_partitions(RASTER_PARTITIONS))
        new = [key for key in keys if key not in known]
        if new:
            self.instance.add_dynamic_partitions(RASTER_PARTITIONS, new)
        ordered = self.instance.get_dynamic_partitions(RASTER_PARTITIONS)
        for batch in contiguous_batches(ordered, set(keys), batch_size):
            for outcome in _outcomes(self._execute(batch), batch, files):
                done(outcome)

    def _execute(self, batch: list[str]) -> dg.ExecuteInProcessResult:
        from geo_platform.defs.raster.sensors import COLLECTION_TAG

        return self.job.execute_in_process(
            run_config=self.run_config,
            instance=self.instance,
            asset_selection=self.selection,
            raise_on_error=False,
            tags={
                "dagster/asset_partition_range_start": batch[0],
                "dagster/asset_partition_range_end": batch[-1],
                "geo_platform/source": f"{BRONZE}/{self.collection}/ ({len(batch)} files)",
                "geo_platform/via": "cli",
                COLLECTION_TAG: self.collection,
            },
        )


def _outcomes(
    result: dg.ExecuteInProcessResult, batch: list[str], files: dict[str, Path]
) -> list[IngestOutcome]:
    """One outcome per key of the run: its materializations, or why it failed."""
    from geo_platform.defs.raster.assets import FAILED_RASTERS

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
            data = event.step_failure_data
            user = data.user_failure_data
            if user and FAILED_RASTERS in user.metadata:
                failed.update(user.metadata[FAILED_RASTERS].value)  # type: ignore[arg-type]
            else:
                step_error = _error_message(event)
    outcomes = []
    for key in batch:
        if key in failed:
            outcomes.append(IngestOutcome(files[key], key, False, failed[key]))
        elif "stac_item" in metadata[key]:
            outcomes.append(IngestOutcome(files[key], key, True, "ok", metadata[key]))
        else:
            reason = step_error or "the run ended before this raster was processed"
            outcomes.append(IngestOutcome(files[key], key, False, f"{BRONZE}/{key}: {reason}"))
    return outcomes


def _error_message(event: Any) -> str:
    data = event.step_failure_data
    if data.user_failure_data and data.user_failure_data.description:
        return str(data.user_failure_data.description)
    error = data.error
    while error and error.cause:
        error = error.cause
    return error.message.strip() if error else "step failed"
