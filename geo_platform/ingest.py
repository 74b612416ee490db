"""Copy local files into bronze and materialize them on the Dagster instance.

What ``geo-platform ingest`` and the demo run. Files are uploaded to bronze, registered
as partitions, and run in batches: one Dagster run per batch of contiguous partitions
(``GEO_PLATFORM_RUN_BATCH_SIZE``, default 100), each raster isolated inside its run, so
that one bad file fails alone, with its reason. The runs are in the UI like any other.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from geo_platform.backends import blob_store as profile_blob_store
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.partition_keys import (
    blob_key_problem,
    collection_name_problem,
    is_raster_key,
)
from geo_platform.lib.raster.sidecars import local_sidecars
from geo_platform.lib.vector.formats import is_vector_key
from geo_platform.resources.blob_store import BRONZE, SHA256_METADATA, BlobInfo, BlobStore
from geo_platform.settings import PlatformSettings, get_run_settings

if TYPE_CHECKING:
    from geo_platform.runs import RasterOutcome

# Bronze uploads at once: hashing and copying release the GIL.
_UPLOAD_THREADS = 4


@dataclass
class IngestOutcome:
    source: Path
    blob_key: str
    ok: bool
    message: str
    metadata: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Another command's run that was already running this file (it was not run twice).
    by_run: str | None = None

    @classmethod
    def of(cls, source: Path, outcome: RasterOutcome) -> IngestOutcome:
        return cls(
            source, outcome.blob_key, outcome.ok, outcome.message, outcome.metadata, outcome.by_run
        )


def collect_files(
    paths: Iterable[Path],
    *,
    follow_symlinks: bool = False,
    warn: Callable[[str], None] = lambda message: None,
) -> list[tuple[Path, str]]:
    """``(file, name inside the collection)``; folders contribute their raster and vector
    files. A link inside a folder that leads out of it is skipped (with a warning) unless
    ``follow_symlinks``: a link to /etc/passwd named passwd.tif is not a raster to copy."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if not path.is_dir():
            found.append((path, path.name))
            continue
        root = path.resolve()
        for folder, dirs, names in os.walk(path, followlinks=follow_symlinks):
            here = Path(folder)
            if not follow_symlinks:
                for name in [d for d in dirs if (here / d).is_symlink()]:
                    if not _inside(here / name, root):
                        warn(f"{here / name}: skipped, a link leading out of {path}")
                        dirs.remove(name)
            dirs.sort()
            for name in sorted(names):
                file = here / name
                relative = file.relative_to(path).as_posix()
                if not (is_raster_key(relative) or is_vector_key(relative)):
                    continue
                if not follow_symlinks and file.is_symlink() and not _inside(file, root):
                    warn(f"{file}: skipped, a link leading out of {path}")
                elif file.is_file():
                    found.append((file, relative))
    return sorted(found, key=lambda pair: pair[1])


def _inside(link: Path, root: Path) -> bool:
    return link.resolve().is_relative_to(root)


def check_collection_name(collection: str) -> str:
    if problem := collection_name_problem(collection):
        raise ValueError(f"invalid collection name {collection!r}: {problem}")
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
    vector_tiles: bool = False,
    follow_symlinks: bool = False,
    warn: Callable[[str], None] = lambda message: None,
) -> list[IngestOutcome]:
    """Ingest every file; ``report`` is called for each as its batch finishes. Vector
    files go their own way (``geo_platform.vector_ingest``), one run each."""
    check_collection_name(collection)
    outcomes: list[IngestOutcome] = []

    def done(outcome: IngestOutcome) -> None:
        report(outcome)
        outcomes.append(outcome)

    files: dict[str, Path] = {}
    vectors: dict[str, Path] = {}
    for source, name in collect_files(paths, follow_symlinks=follow_symlinks, warn=warn):
        key = f"{collection}/{name}"
        if not source.is_file():
            done(IngestOutcome(source, key, False, f"{source}: no such file"))
        elif problem := blob_key_problem(key):
            done(IngestOutcome(source, key, False, f"{source}: {problem}"))
        elif is_vector_key(key):
            vectors[key] = source
        else:
            files[key] = source
    if vectors:
        # The copies into bronze start before Dagster is imported and the instance
        # loaded: the storage's work (Azurite's, on this machine) overlaps that
        # single-threaded start-up instead of the load.
        with (
            ThreadPoolExecutor(1, thread_name_prefix="bronze-hash") as hasher,
            ThreadPoolExecutor(1, thread_name_prefix="bronze-upload") as uploader,
        ):
            copies = {
                key: BronzeCopy.start(source, key, settings, hasher, uploader)
                for key, source in vectors.items()
            }
            from geo_platform.vector_ingest import ingest_vectors

            ingest_vectors(vectors, copies, settings=settings, tiles=vector_tiles, report=done)
    if not files:
        return outcomes
    store = profile_blob_store(settings)
    with ThreadPoolExecutor(_UPLOAD_THREADS, thread_name_prefix="bronze-upload") as uploader:
        # Uploads start while Dagster's imports and the instance load (~1.5 s).
        uploads = {
            key: uploader.submit(_upload_if_changed, store, source, key)
            for key, source in files.items()
        }
        from geo_platform.runs import RasterRunner

        runner = RasterRunner(settings, verbose=verbose, notice=warn)
        etags: dict[str, str] = {}
        for key, upload in uploads.items():
            if error := _failed(upload):
                message = f"{files[key]}: cannot copy to bronze: {error}"
                done(IngestOutcome(files[key], key, False, message))
            else:
                etags[key] = upload.result().etag
    runner.run(
        etags,
        output_tier=output_tier,
        batch_size=batch_size or get_run_settings().batch_size,
        done=lambda outcome: done(IngestOutcome.of(files[outcome.blob_key], outcome)),
    )
    return outcomes


@dataclass
class BronzeCopy:
    """A vector file's copy into bronze, begun at once: its SHA-256 (which the run needs
    first, as a tag) on one thread, the upload after it on another."""

    sha256: Future[str]
    blob: Future[BlobInfo]

    @classmethod
    def start(
        cls,
        source: Path,
        key: str,
        settings: PlatformSettings,
        hasher: ThreadPoolExecutor,
        uploader: ThreadPoolExecutor,
    ) -> BronzeCopy:
        digest = hasher.submit(sha256_file, source)

        def upload() -> BlobInfo:
            store = profile_blob_store(settings)
            return _put(store, source, key, digest=digest.result())[0]

        return cls(digest, uploader.submit(upload))


def _failed(upload: Future[BlobInfo]) -> str | None:
    error = upload.exception()
    if error is None:
        return None
    if isinstance(error, OSError):
        return str(error)
    raise error


def _upload_if_changed(blob_store: BlobStore, source: Path, key: str) -> BlobInfo:
    """Leave an identical bronze blob alone: its modification time dates the item. The
    raster's sidecars (world file, ``.aux.xml``...) go first, and a changed sidecar is a
    new version of the raster."""
    folder = PurePosixPath(key).parent
    sidecars_changed = False
    for sidecar in local_sidecars(source):
        info, uploaded = _put(blob_store, sidecar, str(folder / sidecar.name))
        sidecars_changed |= uploaded
    info, _ = _put(blob_store, source, key, force=sidecars_changed)
    return info


def _put(
    blob_store: BlobStore,
    source: Path,
    key: str,
    *,
    force: bool = False,
    digest: str | None = None,
) -> tuple[BlobInfo, bool]:
    digest = digest or sha256_file(source)
    try:
        existing = blob_store.info(BRONZE, key)
    except FileNotFoundError:
        existing = None
    if not force and existing is not None and existing.metadata.get(SHA256_METADATA) == digest:
        return existing, False
    return blob_store.upload_file(source, BRONZE, key, metadata={SHA256_METADATA: digest}), True
