"""Blob storage: containers of keyed blobs. The embedded profile keeps them in folders."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import dagster as dg

from geo_platform.errors import BlobChangedError
from geo_platform.lib.partition_keys import storage_key_problem
from geo_platform.lib.raster.sidecars import is_sidecar_of, sidecar_prefix

BRONZE = "bronze"
# Blob metadata with the content's SHA-256 (hex), set by whoever uploads through us.
SHA256_METADATA = "sha256"


@dataclass(frozen=True)
class BlobInfo:
    container: str
    key: str
    size: int
    etag: str
    last_modified: dt.datetime
    metadata: dict[str, str] = field(default_factory=dict)
    # Hex MD5 of the content when the backend records one (Azure does for small uploads).
    content_md5: str | None = None
    # When this version landed in the store (a copy may keep an older modification time).
    stored_at: dt.datetime | None = None


@dataclass(frozen=True)
class BlobPage:
    """Blobs in key order, and the token that lists the ones after them (None: no more)."""

    blobs: list[BlobInfo]
    next_token: str | None


class BlobStore(dg.ConfigurableResource, ABC):
    """Containers of blobs addressed by key (``landsat/2024/scene.tif``)."""

    @abstractmethod
    def list_blobs(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        """Every blob in ``container`` whose key starts with ``prefix``, in key order."""

    @abstractmethod
    def list_page(self, container: str, token: str | None, max_results: int) -> BlobPage:
        """Up to ``max_results`` blobs, in key order, after those ``token`` ended with
        (None: from the first). The token is small and opaque: a sensor keeps it in its
        cursor, whatever the size of the container."""

    @abstractmethod
    def info(self, container: str, key: str) -> BlobInfo:
        """Size, ETag, modification time and metadata; ``FileNotFoundError`` if absent."""

    @abstractmethod
    def upload_file(
        self,
        path: str | Path,
        container: str,
        key: str,
        metadata: dict[str, str] | None = None,
        *,
        consume: bool = False,
    ) -> BlobInfo:
        """Store a local file as a blob, replacing any blob at that key atomically.

        ``consume``: the caller hands the file over (a temporary output); a store may
        move it into place instead of copying it.
        """

    def stage_file(self, path: str | Path, container: str, key: str) -> Callable[[], BlobInfo]:
        """Send a local file's bytes now and make them the blob at ``key`` only when the
        returned ``commit`` is called: nothing is visible before, and a ``commit`` never
        called leaves the old blob as it was. The file is the store's from here on.
        Here the whole upload waits for the commit; a remote store sends blocks first."""
        return partial(self.upload_file, path, container, key, consume=True)

    @abstractmethod
    def delete(self, container: str, key: str) -> None:
        """Remove a blob; no error if it is already gone."""

    @abstractmethod
    @contextmanager
    def local_file(
        self,
        container: str,
        key: str,
        *,
        sidecars: bool | Sequence[str] = False,
        scratch: Path | None = None,
        etag: str | None = None,
    ) -> Iterator[Path]:
        """A local path holding the blob's bytes for the duration of the block;
        ``sidecars``: with the raster's sidecar files (world file, ``.aux.xml``, ``.msk``...)
        beside it under their names, as GDAL looks for them (their keys, when already
        known: ``info_and_sidecars``). A download goes under ``scratch`` (the run's scratch
        folder, reclaimed if the process dies) when given. ``etag``: the version the caller
        listed; BlobChangedError if the blob is another one by now."""

    def info_and_sidecars(self, container: str, key: str) -> tuple[BlobInfo, list[str]]:
        """``info`` and the keys of the sidecars ``local_file`` has to fetch with the blob."""
        return self.info(container, key), self.sidecar_keys(container, key)

    def infos_and_sidecars(
        self, container: str, keys: Sequence[str]
    ) -> dict[str, tuple[BlobInfo, list[str]]]:
        """``info_and_sidecars`` of many keys at once where the store answers that in fewer
        requests; the keys it has no answer for are left out (here: all of them, as a
        local folder answers each key as cheaply)."""
        return {}

    def sidecar_keys(self, container: str, key: str) -> list[str]:
        """The blobs beside ``key`` that GDAL reads with it (``lib.raster.sidecars``)."""
        return [
            blob.key
            for blob in self.list_blobs(container, sidecar_prefix(key))
            if is_sidecar_of(key, blob.key)
        ]

    def sign_href(self, href: str, lifetime: dt.timedelta) -> str:
        """``href`` as a user opens it without credentials for ``lifetime``: unchanged
        where no credentials are needed (local files), signed where the store can."""
        return href

    @abstractmethod
    def href(self, container: str, key: str) -> str:
        """Where a user opens the blob: a local path or a URL."""

    @abstractmethod
    def gdal_path(self, container: str, key: str) -> str:
        """A path GDAL opens directly (a file path, or a ``/vsi...`` path)."""

    def gdal_env(self) -> dict[str, str]:
        """GDAL configuration that ``gdal_path`` needs: wrap reads in ``rasterio.Env(**...)``."""
        return {}

    def exists(self, container: str, key: str) -> bool:
        try:
            self.info(container, key)
        except FileNotFoundError:
            return False
        return True


def _files_in_key_order(
    folder: Path, parent: str, prefix: str, after: str = ""
) -> Iterator[tuple[str, Path]]:
    """``(key, path)`` of the files under ``folder`` whose key starts with ``prefix`` and
    comes after ``after``, by key.

    Every key in a sub-folder starts with ``name/``, so sorting entries by name, with ``/``
    appended to folders, yields keys in string order while streaming the tree.
    """
    try:
        with os.scandir(folder) as scan:
            # Names are filtered before anything is asked of the file system: listing one
            # raster's tiers in a folder of 10,000 costs string comparisons, not stats.
            entries = [entry for entry in scan if _may_hold(parent + entry.name, prefix)]
    except (FileNotFoundError, NotADirectoryError):
        return
    names = {entry: entry.name + "/" if entry.is_dir() else entry.name for entry in entries}
    for entry in sorted(entries, key=names.__getitem__):
        key = parent + names[entry]
        if entry.is_dir():
            # Skip folders that hold no key with this prefix, or none after ``after``.
            wanted = key.startswith(prefix) or prefix.startswith(key)
            if wanted and (key > after or after.startswith(key)):
                yield from _files_in_key_order(Path(entry.path), key, prefix, after)
        elif key.startswith(prefix) and key > after and not entry.name.startswith(".tmp-"):
            yield key, Path(entry.path)


def _may_hold(key: str, prefix: str) -> bool:
    """Whether the entry (a file or a folder) named ``key`` can hold keys with ``prefix``."""
    return key.startswith(prefix) or prefix.startswith(key)


def _etag(stat: os.stat_result) -> str:
    return f"{stat.st_size:x}-{stat.st_mtime_ns:x}"


def _same_device(path: Path, folder: Path) -> bool:
    return path.stat().st_dev == folder.stat().st_dev


def check_key(key: str) -> str:
    """Reject keys outside the platform's storage rule (``lib.partition_keys``): none can
    escape its container or fold into another, on either profile. Bronze keys are held to
    the stricter ``blob_key_problem`` where they enter (ingest, sensor, reconcile)."""
    if problem := storage_key_problem(key):
        raise ValueError(f"invalid blob key {key!r}: {problem}")
    return key


class LocalBlobStore(BlobStore):
    """Blobs as files, ``<root>/<container>/<key>``; metadata in ``<root>/.metadata``."""

    root: str

    def _path(self, container: str, key: str) -> Path:
        return Path(self.root) / container / check_key(key)

    def _metadata_path(self, container: str, key: str) -> Path:
        return Path(self.root) / ".metadata" / container / f"{check_key(key)}.json"

    def list_blobs(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        for key, path in _files_in_key_order(Path(self.root) / container, "", prefix):
            yield self._info(container, key, path.stat())

    def list_page(self, container: str, token: str | None, max_results: int) -> BlobPage:
        # The token is the last key listed: folders list in key order, so the next page
        # starts after it, whatever was added or removed meanwhile.
        files = _files_in_key_order(Path(self.root) / container, "", "", token or "")
        blobs = [
            self._info(container, key, path.stat())
            for key, path in itertools.islice(files, max_results)
        ]
        more = len(blobs) == max_results and next(files, None) is not None
        return BlobPage(blobs, blobs[-1].key if more else None)

    def info(self, container: str, key: str) -> BlobInfo:
        path = self._path(container, key)
        # A folder is only a key prefix here, as in object stores.
        if not path.is_file():
            raise FileNotFoundError(f"{container}/{key}: no such blob")
        return self._info(container, key, path.stat())

    def _info(self, container: str, key: str, stat: os.stat_result) -> BlobInfo:
        etag = _etag(stat)
        return BlobInfo(
            container=container,
            key=key,
            size=stat.st_size,
            etag=etag,
            last_modified=dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC),
            metadata=self._read_metadata(container, key, etag),
            # A copy keeps its source's modification time; the inode's change time is
            # when it landed here.
            stored_at=dt.datetime.fromtimestamp(max(stat.st_mtime, stat.st_ctime), dt.UTC),
        )

    def _read_metadata(self, container: str, key: str, etag: str) -> dict[str, str]:
        """The metadata uploaded with the blob, unless the file was replaced since.

        The sidecar names the ETag it was written for: a file copied over the blob by
        hand keeps no stale checksum, as an overwritten Azure blob keeps none.
        """
        if storage_key_problem(key):
            # Dropped into the folder by hand under a name the store refuses: listed (the
            # sensor reports it), but it cannot have metadata.
            return {}
        meta_path = self._metadata_path(container, key)
        try:
            recorded = json.loads(meta_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}
        if not isinstance(recorded, dict) or recorded.get("etag") != etag:
            return {}
        return dict(recorded.get("metadata") or {})

    def upload_file(
        self,
        path: str | Path,
        container: str,
        key: str,
        metadata: dict[str, str] | None = None,
        *,
        consume: bool = False,
    ) -> BlobInfo:
        target = self._path(container, key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if consume and _same_device(Path(path), target.parent):
            # A rename is atomic and copies nothing: 0.5 s saved per 500 MB tier.
            os.replace(path, target)
            return self._finish_upload(container, key, metadata)
        # Copy beside the target, then rename: readers never see half a blob.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        try:
            shutil.copy2(path, tmp)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return self._finish_upload(container, key, metadata)

    def _finish_upload(self, container: str, key: str, metadata: dict[str, str] | None) -> BlobInfo:
        meta_path = self._metadata_path(container, key)
        if metadata:
            etag = _etag(self._path(container, key).stat())
            meta_path.parent.mkdir(parents=True, exist_ok=True)
            meta_path.write_text(json.dumps({"etag": etag, "metadata": metadata}, sort_keys=True))
        else:
            meta_path.unlink(missing_ok=True)
        return self.info(container, key)

    def delete(self, container: str, key: str) -> None:
        self._path(container, key).unlink(missing_ok=True)
        self._metadata_path(container, key).unlink(missing_ok=True)

    @contextmanager
    def local_file(
        self,
        container: str,
        key: str,
        *,
        sidecars: bool | Sequence[str] = False,
        scratch: Path | None = None,
        etag: str | None = None,
    ) -> Iterator[Path]:
        # The blob's own file: its sidecars are already beside it.
        path = self._path(container, key)
        if not path.is_file():
            raise FileNotFoundError(f"{container}/{key}: no such blob")
        if etag is not None and _etag(path.stat()) != etag:
            raise BlobChangedError(f"{container}/{key}: changed since it was listed")
        yield path

    def info_and_sidecars(self, container: str, key: str) -> tuple[BlobInfo, list[str]]:
        # None to fetch: GDAL finds them beside the blob's own file (listing them would
        # scan the blob's folder once per raster).
        return self.info(container, key), []

    def href(self, container: str, key: str) -> str:
        return str(self._path(container, key).resolve())

    def gdal_path(self, container: str, key: str) -> str:
        return str(self._path(container, key).resolve())
