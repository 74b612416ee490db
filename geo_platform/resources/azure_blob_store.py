"""Blob storage in Azure Blob Storage (or Azurite): one Azure container per platform container."""

from __future__ import annotations

import datetime as dt
import mimetypes
import os
import random
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, cast
from urllib.parse import unquote, urlsplit, urlunsplit

from azure.core import MatchConditions
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobProperties,
    BlobSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
    LinearRetry,
    generate_blob_sas,
)
from pydantic import Field, PrivateAttr

from geo_platform.errors import BlobChangedError, ConfigurationError, TransientError
from geo_platform.lib.raster.sidecars import is_sidecar_of, sidecar_names, sidecar_prefix
from geo_platform.resources.blob_store import BlobInfo, BlobPage, BlobStore, check_key

# The service's maximum page size: fewer round trips when listing big containers.
LIST_PAGE_SIZE = 5000
# infos_and_sidecars lists at most this many blobs: (any batch, and per key on top).
_BATCH_LISTED_AT_MOST = (1000, 20)
# Below this size an upload is one request and Azure records a Content-MD5; above it the
# SDK streams blocks, so memory stays bounded by block size x concurrency.
MAX_SINGLE_PUT_BYTES = 8 * 1024**2
# Block size of a staged upload (stage_file): memory is this x max_concurrency.
_STAGE_BLOCK_BYTES = 8 * 1024**2
# Every request body carries its MD5 (Content-MD5), which the service verifies before it
# stores the bytes: corruption in transit fails the upload instead of landing in bronze.
# Without it Azure (and Azurite) compute a CRC64 of every block to answer with: Azurite's,
# in JavaScript, costs twice the CPU of the whole upload otherwise (measured: 0.021 against
# 0.010 CPU s per MB), on the same cores as the load it runs beside. hashlib's MD5 costs
# the client ~0.002 CPU s per MB and releases the GIL.
_VALIDATE_CONTENT = True
# Uploads of one blob by concurrent writers: see upload_file.
_BLOCK_LIST_ATTEMPTS = 5
# The SDK's default (3 retries 15-25 s apart, 20 s connect timeout) makes a stopped
# endpoint look like a hang for a minute. Two retries 0-2 s apart ride out a blip and fail
# in seconds; callers retry TransientError with their own backoff (Dagster run retries).
RETRIES = 2
RETRY_BACKOFF_SECONDS = 1
CONNECTION_TIMEOUT_SECONDS = 5
# Between two socket reads of a response, not for a whole download.
READ_TIMEOUT_SECONDS = 60
SAS_CLOCK_SKEW = dt.timedelta(minutes=5)
# HTTP statuses Azure uses for throttling and passing server trouble.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# What Azure answers (400) when a request body does not match its Content-MD5.
_ALTERED_IN_TRANSIT = frozenset({"Md5Mismatch", "Crc64Mismatch"})

# Azure's rules: 3-63 characters, lowercase letters, digits and single hyphens.
_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# Metadata names travel as x-ms-meta-<name> headers and must be C# identifiers.
_METADATA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Secrets a connection string may carry, and a SAS signature in any URL.
_SECRET_PARTS = ("AccountKey", "SharedAccessSignature")
_SAS_SIGNATURE = re.compile(r"(sig=)[^&\s'\"]+", re.IGNORECASE)


class AzureBlobStore(BlobStore):
    """Blobs in an Azure storage account: ``<container_prefix><container>/<key>``.

    Containers are created on first upload. Downloads and uploads stream through
    the SDK in blocks, so blobs larger than memory are fine. An unreachable account
    raises :class:`~geo_platform.errors.TransientError` within seconds.
    """

    connection_string: str = Field(
        repr=False,
        description="Azure Storage connection string. Holds the account key: pass it as an "
        "EnvVar or from a SecretStr setting, never log it.",
    )
    container_prefix: str = Field(
        default="",
        description="Prepended to every container name, so several deployments (or test "
        "runs) can share one storage account: 'staging-' stores bronze in 'staging-bronze'.",
    )
    max_concurrency: int = Field(
        default=4, gt=0, description="Parallel block transfers per upload or download."
    )

    _client: BlobServiceClient | None = PrivateAttr(default=None)

    def _service(self) -> BlobServiceClient:
        """The SDK client, built on first use: constructing the resource stays offline."""
        if self._client is None:
            try:
                self._client = BlobServiceClient.from_connection_string(
                    self.connection_string,
                    retry_policy=LinearRetry(
                        retry_total=RETRIES, backoff=RETRY_BACKOFF_SECONDS, random_jitter_range=1
                    ),
                    connection_timeout=CONNECTION_TIMEOUT_SECONDS,
                    read_timeout=READ_TIMEOUT_SECONDS,
                    max_single_put_size=MAX_SINGLE_PUT_BYTES,
                )
            except ValueError as exc:
                # The SDK's message does not echo the string; ours must not either.
                raise ConfigurationError(
                    "the Azure Storage connection string is malformed"
                ) from exc
        return self._client

    def _container(self, container: str) -> ContainerClient:
        name = self.container_prefix + container
        if not _CONTAINER_NAME.match(name):
            raise ValueError(
                f"invalid Azure container name {name!r}: 3-63 lowercase letters, digits "
                "and single hyphens"
            )
        return self._service().get_container_client(name)

    def _blob(self, container: str, key: str) -> BlobClient:
        return self._container(container).get_blob_client(check_key(key))

    def endpoint(self) -> str:
        """The account's blob endpoint without any SAS token: safe in messages and logs."""
        return _without_query(self._service().url).rstrip("/")

    def list_blobs(self, container: str, prefix: str = "") -> Iterator[BlobInfo]:
        client = self._container(container)
        with self._errors(f"listing {container}" + (f" under {prefix!r}" if prefix else "")):
            pages = client.list_blobs(
                name_starts_with=prefix or None,
                include=["metadata"],
                results_per_page=LIST_PAGE_SIZE,
            ).by_page()
            try:
                # The service returns names in string order, page after page.
                for page in pages:
                    for properties in page:
                        yield _blob_info(container, properties)
            except ResourceNotFoundError:
                # A container nobody uploaded to yet is an empty container.
                return

    def list_page(self, container: str, token: str | None, max_results: int) -> BlobPage:
        client = self._container(container)
        with self._errors(f"listing {container}"):
            # The page iterator carries the continuation token (not in the SDK's types).
            pages: Any = client.list_blobs(
                include=["metadata"], results_per_page=min(max_results, LIST_PAGE_SIZE)
            ).by_page(continuation_token=token)
            blobs: list[BlobInfo] = []
            try:
                for page in pages:
                    blobs.extend(_blob_info(container, properties) for properties in page)
                    if len(blobs) >= max_results or not pages.continuation_token:
                        break
            except ResourceNotFoundError:
                # A container nobody uploaded to yet is an empty container.
                return BlobPage([], None)
            return BlobPage(blobs, pages.continuation_token or None)

    def info(self, container: str, key: str) -> BlobInfo:
        blob = self._blob(container, key)
        with self._errors(f"reading properties of {container}/{key}"):
            try:
                properties = blob.get_blob_properties()
            except ResourceNotFoundError as exc:
                raise FileNotFoundError(f"{container}/{key}: no such blob") from exc
        return _blob_info(container, properties)

    def upload_file(
        self,
        path: str | Path,
        container: str,
        key: str,
        metadata: dict[str, str] | None = None,
        *,
        consume: bool = False,
    ) -> BlobInfo:
        metadata = _checked_metadata(metadata or {})
        blob = self._blob(container, key)
        size = Path(path).stat().st_size
        content_type, _ = mimetypes.guess_type(PurePosixPath(key).name)
        # Block blobs become visible only when their block list commits, so readers see
        # the old blob or the new one, never a mix. Overwriting replaces the metadata too.
        upload = partial(
            blob.upload_blob,
            length=size,
            overwrite=True,
            metadata=metadata or None,
            content_settings=ContentSettings(content_type=content_type),
            max_concurrency=self.max_concurrency,
            validate_content=_VALIDATE_CONTENT,
        )
        with self._errors(f"uploading {container}/{key}"), open(path, "rb") as stream:
            for attempt in range(_BLOCK_LIST_ATTEMPTS):
                try:
                    result = upload(stream)
                    break
                except ResourceNotFoundError as exc:
                    # Creating the container only when it is missing keeps an upload at
                    # one request; a cached "exists" flag would go stale if someone
                    # deletes it.
                    if getattr(exc, "error_code", None) != "ContainerNotFound":
                        raise
                    self._ensure_container(container)
                except HttpResponseError as exc:
                    # The SDK names blocks by their offset: two writers of one blob at once
                    # stage the same block ids, and the first commit discards the other's
                    # uncommitted blocks. The later writer uploads again (last one wins,
                    # whole, as for any overwrite).
                    if getattr(exc, "error_code", None) != "InvalidBlockList" or (
                        attempt == _BLOCK_LIST_ATTEMPTS - 1
                    ):
                        raise
                    time.sleep(random.uniform(0.1, 0.5) * (attempt + 1))
                stream.seek(0)
        # After a block upload the answer's Content-MD5 is that of the block list, not the blob.
        md5 = result.get("content_md5") if size <= MAX_SINGLE_PUT_BYTES else None
        # Built from the upload's own answer: another writer's later blob cannot leak in,
        # and it saves a round trip.
        return BlobInfo(
            container=container,
            key=key,
            size=size,
            etag=result["etag"],
            last_modified=result["last_modified"],
            metadata=dict(metadata),
            content_md5=_md5_hex(md5),
        )

    def stage_file(self, path: str | Path, container: str, key: str) -> Callable[[], BlobInfo]:
        """The file's blocks staged now (uncommitted blocks are invisible, and Azure drops
        them if no commit follows); the commit is one short request. Block ids are random
        per call, so two writers staging one blob never take each other's blocks."""
        size = Path(path).stat().st_size
        if size <= MAX_SINGLE_PUT_BYTES:
            return super().stage_file(path, container, key)
        blob = self._blob(container, key)
        run = uuid.uuid4().hex
        offsets = range(0, size, _STAGE_BLOCK_BYTES)
        ids = [f"{run}-{i:06d}" for i in range(len(offsets))]

        def stage(block_id: str, offset: int) -> None:
            with open(path, "rb") as f:
                f.seek(offset)
                blob.stage_block(
                    block_id, f.read(_STAGE_BLOCK_BYTES), validate_content=_VALIDATE_CONTENT
                )

        with self._errors(f"uploading {container}/{key}"):
            try:
                stage(ids[0], 0)
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) != "ContainerNotFound":
                    raise
                self._ensure_container(container)
                stage(ids[0], 0)
            with ThreadPoolExecutor(self.max_concurrency) as pool:
                list(pool.map(stage, ids[1:], offsets[1:]))
        content_type, _ = mimetypes.guess_type(PurePosixPath(key).name)

        def commit() -> BlobInfo:
            with self._errors(f"uploading {container}/{key}"):
                try:
                    result = blob.commit_block_list(
                        [BlobBlock(block_id) for block_id in ids],
                        content_settings=ContentSettings(content_type=content_type),
                    )
                except HttpResponseError as exc:
                    # Another writer committed this blob since, which discards our blocks.
                    if getattr(exc, "error_code", None) != "InvalidBlockList":
                        raise
                    return self.upload_file(path, container, key)
            return BlobInfo(
                container=container,
                key=key,
                size=size,
                etag=str(result["etag"]),
                last_modified=cast(dt.datetime, result["last_modified"]),
                metadata={},
                content_md5=None,
            )

        return commit

    def _ensure_container(self, container: str) -> None:
        try:
            self._container(container).create_container()
        except ResourceExistsError:
            pass

    def delete(self, container: str, key: str) -> None:
        blob = self._blob(container, key)
        with self._errors(f"deleting {container}/{key}"):
            try:
                blob.delete_blob(delete_snapshots="include")
            except ResourceNotFoundError:
                pass

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
        # Keep the key's file name: GDAL picks drivers and sidecar files by name, and
        # callers see the same name as with LocalBlobStore.
        with tempfile.TemporaryDirectory(prefix="blob-", dir=scratch) as folder:
            path = Path(folder) / PurePosixPath(key).name
            self._download(container, key, path, etag)
            if sidecars:
                known = sidecars if not isinstance(sidecars, bool) else None
                for sidecar in self.sidecar_keys(container, key) if known is None else known:
                    try:
                        self._download(
                            container, sidecar, Path(folder) / PurePosixPath(sidecar).name
                        )
                    except FileNotFoundError as exc:
                        # Listed with the raster, gone since: the raster is to be read again.
                        message = f"{container}/{key}: its sidecar {sidecar} is gone since listed"
                        raise BlobChangedError(message) from exc
            yield path

    def info_and_sidecars(self, container: str, key: str) -> tuple[BlobInfo, list[str]]:
        """One listing instead of two requests: the sidecars' prefix covers the blob."""
        found = {blob.key: blob for blob in self.list_blobs(container, sidecar_prefix(key))}
        if key not in found:
            raise FileNotFoundError(f"{container}/{key}: no such blob")
        return found[key], [name for name in found if is_sidecar_of(key, name)]

    def infos_and_sidecars(
        self, container: str, keys: Sequence[str]
    ) -> dict[str, tuple[BlobInfo, list[str]]]:
        """One listing under the keys' common prefix rather than one per key (Azurite scans
        the whole container for each, ~12 ms at 20,000 blobs); nothing when that prefix
        holds too many other blobs to be worth it (a listing costs ~0.3 ms a blob)."""
        owners: dict[str, list[str]] = {}  # sidecar key -> the raster keys it belongs to
        for key in keys:
            folder = key[: key.rfind("/") + 1]
            for name in sidecar_names(PurePosixPath(key).name):
                owners.setdefault(folder + name, []).append(key)
        prefix = os.path.commonprefix([sidecar_prefix(key) for key in keys])  # noqa: RUF071
        budget = _BATCH_LISTED_AT_MOST[0] + _BATCH_LISTED_AT_MOST[1] * len(keys)
        wanted, found = set(keys), {}
        sidecars: dict[str, list[str]] = {key: [] for key in keys}
        for listed, blob in enumerate(self.list_blobs(container, prefix)):
            if listed >= budget:
                return {}
            if blob.key in wanted:
                found[blob.key] = blob
            for owner in owners.get(blob.key, ()):
                sidecars[owner].append(blob.key)
        return {key: (blob, sidecars[key]) for key, blob in found.items()}

    def _download(self, container: str, key: str, path: Path, etag: str | None = None) -> None:
        blob = self._blob(container, key)
        with self._errors(f"downloading {container}/{key}"), open(path, "wb") as out:
            try:
                if etag is None:
                    download = blob.download_blob(max_concurrency=self.max_concurrency)
                else:  # only the version listed: its ETag is what the runs record
                    download = blob.download_blob(
                        max_concurrency=self.max_concurrency,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
                download.readinto(out)
            except ResourceNotFoundError as exc:
                raise FileNotFoundError(f"{container}/{key}: no such blob") from exc
            except ResourceModifiedError as exc:
                raise BlobChangedError(f"{container}/{key}: changed since it was listed") from exc

    def sign_href(self, href: str, lifetime: dt.timedelta) -> str:
        """A blob URL of this account with a read-only SAS valid for ``lifetime``
        (signed with the account key, offline); any other href unchanged."""
        endpoint = self.endpoint() + "/"
        if not href.startswith(endpoint) or "?" in href:
            return href
        container_name, _, blob_name = href[len(endpoint) :].partition("/")
        account_name = self._service().account_name
        account_key = getattr(self._service().credential, "account_key", None)
        if not blob_name or not account_name or not account_key:
            raise ConfigurationError(
                "cannot sign hrefs: the Azure connection string has no account key "
                "(a SAS-only connection string cannot make new SAS tokens)"
            )
        now = dt.datetime.now(dt.UTC)
        token = generate_blob_sas(
            account_name=account_name,
            container_name=container_name,
            blob_name=unquote(blob_name),
            account_key=account_key,
            permission=BlobSasPermissions(read=True),
            # A few minutes back: clocks of the reader and the service differ.
            start=now - SAS_CLOCK_SKEW,
            expiry=now + lifetime,
        )
        return f"{href}?{token}"

    def href(self, container: str, key: str) -> str:
        return _without_query(self._blob(container, key).url)

    def gdal_path(self, container: str, key: str) -> str:
        return f"/vsiaz/{self.container_prefix}{container}/{check_key(key)}"

    def gdal_env(self) -> dict[str, str]:
        """What ``/vsiaz/`` needs: the account (Azurite's endpoint included) and no stale reads.

        GDAL caches blob sizes and bytes per process, beyond the ``rasterio.Env`` block:
        without ``CPL_VSIL_CURL_NON_CACHED`` a blob overwritten by a re-run is read with its
        old content. Within one open dataset GDAL still caches what it read.
        """
        return {
            "AZURE_STORAGE_CONNECTION_STRING": self.connection_string,
            "CPL_VSIL_CURL_NON_CACHED": f"/vsiaz/{self.container_prefix}",
        }

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Map the SDK's exceptions onto the platform's, without leaking credentials."""
        try:
            yield
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise TransientError(
                f"Azure Blob Storage at {self.endpoint()} is unreachable while {action}: "
                f"{self._redact(_reason(exc))}"
            ) from exc
        except ClientAuthenticationError as exc:
            raise ConfigurationError(
                f"Azure Blob Storage at {self.endpoint()} rejected the credentials while "
                f"{action}: check the account key or SAS in the connection string"
            ) from exc
        except HttpResponseError as exc:
            if exc.status_code in TRANSIENT_STATUSES:
                raise TransientError(
                    f"Azure Blob Storage at {self.endpoint()} answered {exc.status_code} "
                    f"({exc.reason}) while {action}"
                ) from exc
            if getattr(exc, "error_code", None) in _ALTERED_IN_TRANSIT:
                # Nothing was stored; sending the same bytes again is the remedy.
                raise TransientError(
                    f"Azure Blob Storage at {self.endpoint()} refused bytes altered in "
                    f"transit (their MD5 did not match) while {action}"
                ) from exc
            raise

    def _redact(self, text: str) -> str:
        parts = dict(
            part.split("=", 1) for part in self.connection_string.split(";") if "=" in part
        )
        for name in _SECRET_PARTS:
            if parts.get(name):
                text = text.replace(parts[name], "***")
        return _SAS_SIGNATURE.sub(r"\1***", text)


def _blob_info(container: str, properties: BlobProperties) -> BlobInfo:
    return BlobInfo(
        container=container,
        key=properties.name,
        size=properties.size,
        etag=_quoted(properties.etag),
        last_modified=properties.last_modified,
        metadata=dict(properties.metadata or {}),
        content_md5=_md5_hex(properties.content_settings.content_md5),
        stored_at=properties.last_modified,
    )


def _quoted(etag: str) -> str:
    """The ETag as HTTP headers carry it, quotes included.

    Properties and uploads return ``"0x8D..."`` but listings return ``0x8D...``; the sensor
    compares listed ETags with ones recorded from ``info``, so every call must agree.
    """
    return etag if etag.startswith('"') else f'"{etag}"'


def _md5_hex(digest: bytes | bytearray | None) -> str | None:
    return bytes(digest).hex() if digest else None


def _checked_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """Reject metadata Azure would refuse with an opaque 400."""
    for name, value in metadata.items():
        if not _METADATA_NAME.match(name):
            raise ValueError(f"invalid blob metadata name {name!r}: letters, digits, underscores")
        if not value.isascii():
            raise ValueError(f"blob metadata {name!r} must be ASCII (it travels as an HTTP header)")
    return metadata


def _without_query(url: str) -> str:
    """Drop a SAS token (or any query) from a URL."""
    return urlunsplit(urlsplit(url)._replace(query="", fragment=""))


def _reason(exc: BaseException) -> str:
    """The innermost OS-level cause ("Connection refused"), else the SDK's message."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        # azure-core keeps the transport's exception as inner_exception, not as __cause__.
        cause = getattr(cause, "inner_exception", None) or cause.__cause__ or cause.__context__
    # urllib3 prefixes "<...HTTPConnection object at 0x...>: ": noise for a reader.
    return re.sub(r"^<[^>]*>:\s*", "", str(exc))
