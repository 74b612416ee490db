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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg

from geo_platform.backends import blob_store as profile_blob_store
from geo_platform.defs.vector.assets import LOCAL_COPY_TAG, PENDING_UPLOADS, local_copy_tag
from geo_platform.defs.vector.jobs import VECTOR_INGEST_ASSETS
from geo_platform.defs.vector.partitions import VECTOR_PARTITIONS
from geo_platform.ingest import IngestOutcome, _outcome
from geo_platform.instance import get_instance
from geo_platform.lib.hashing import sha256_file
from geo_platform.resources.blob_store import BRONZE, SHA256_METADATA, BlobStore
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
            outcome = _load(job, instance, blob_store, source, key)
            if outcome.ok and tiles_job is not None:
                tiled = _run(tiles_job, instance, source, key, [dg.AssetKey("vector_tiles")])
                outcome.metadata.update(tiled.metadata)
                if not tiled.ok:
                    outcome = IngestOutcome(source, key, False, f"tiles: {tiled.message}")
        report(outcome)
        outcomes.append(outcome)
    return outcomes


def _load(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    blob_store: BlobStore,
    source: Path,
    key: str,
) -> IngestOutcome:
    """Upload into bronze on a thread while the run reads the local file."""
    digest = sha256_file(source)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bronze-upload") as uploader:
        upload = uploader.submit(_upload_if_changed, blob_store, source, key, digest)
        PENDING_UPLOADS[key] = upload
        tags = {LOCAL_COPY_TAG: local_copy_tag(source, digest)}
        try:
            outcome = _run(job, instance, source, key, VECTOR_INGEST_ASSETS, tags)
        finally:
            PENDING_UPLOADS.pop(key, None)
        try:
            upload.result()
        except OSError as e:
            return IngestOutcome(source, key, False, f"{source}: cannot copy to bronze: {e}")
    return outcome


def _upload_if_changed(blob_store: BlobStore, source: Path, key: str, digest: str) -> None:
    """Leave an identical bronze blob alone."""
    try:
        existing = blob_store.info(BRONZE, key).metadata.get(SHA256_METADATA)
    except FileNotFoundError:
        existing = None
    if existing != digest:
        blob_store.upload_file(source, BRONZE, key, metadata={SHA256_METADATA: digest})


def _run(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    source: Path,
    key: str,
    selection: list[dg.AssetKey],
    tags: dict[str, str] | None = None,
) -> IngestOutcome:
    instance.add_dynamic_partitions(VECTOR_PARTITIONS, [key])
    result = job.execute_in_process(
        run_config=_QUIET,
        instance=instance,
        partition_key=key,
        asset_selection=selection,
        raise_on_error=False,
        tags={"geo_platform/source": f"bronze/{key}", "geo_platform/via": "cli", **(tags or {})},
    )
    return _outcome(source, key, result)
