"""One behavioural suite for every BlobStore: folders on disk, and Azure Blob Storage (Azurite)."""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from geo_platform.errors import BlobChangedError, TransientError
from geo_platform.resources import azure_blob_store
from geo_platform.resources.azure_blob_store import AzureBlobStore
from geo_platform.resources.blob_store import BlobStore, LocalBlobStore
from geo_platform.settings import AZURITE_CONNECTION_STRING, get_azure_settings

# Azure's listing page size: one more page's worth shows that listing follows pages.
PAGED_BLOB_COUNT = 5_050


def _azurite_connection_string() -> str:
    return get_azure_settings().connection_string.get_secret_value()


@pytest.fixture(scope="session")
def azurite_service() -> BlobServiceClient:
    """The Azurite account; `make test` starts it, so its absence is a failure."""
    service = BlobServiceClient.from_connection_string(
        _azurite_connection_string(), retry_total=0, connection_timeout=2
    )
    try:
        service.get_account_information()
    except AzureError:
        pytest.fail("Azurite is not answering: start it with `make services`")
    return service


@pytest.fixture(params=["local", pytest.param("azurite", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    """A BlobStore with nothing in it; the Azure one in containers only this test uses."""
    if request.param == "local":
        yield LocalBlobStore(root=str(tmp_path / "blobs"))
        return
    service: BlobServiceClient = request.getfixturevalue("azurite_service")
    prefix = f"t{uuid.uuid4().hex[:12]}-"
    yield AzureBlobStore(connection_string=_azurite_connection_string(), container_prefix=prefix)
    for container in service.list_containers(name_starts_with=prefix):
        service.delete_container(container.name)


@pytest.fixture
def write(tmp_path: Path) -> Callable[[bytes], Path]:
    """Writes bytes to a new local file, to be uploaded."""
    folder = tmp_path / "sources"
    folder.mkdir()

    def _write(data: bytes, name: str = "") -> Path:
        path = folder / (name or f"{uuid.uuid4().hex}.bin")
        path.write_bytes(data)
        return path

    return _write


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1024**2), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_upload_then_info_and_listing_agree_on_size_etag_and_metadata(store, write):
    data = b"first version"
    uploaded = store.upload_file(write(data), "bronze", "landsat/a.tif", {"sha256": "abc"})
    info = store.info("bronze", "landsat/a.tif")
    [listed] = store.list_blobs("bronze")

    assert info.size == len(data)
    assert info.metadata == {"sha256": "abc"}
    # The sensor compares listed ETags with ones recorded from info(): they must match.
    assert uploaded.etag == info.etag == listed.etag
    assert (uploaded.key, uploaded.size, uploaded.metadata) == (info.key, info.size, info.metadata)
    assert listed.metadata == info.metadata
    assert uploaded.content_md5 == info.content_md5 == listed.content_md5
    assert info.content_md5 in (None, hashlib.md5(data).hexdigest())


def test_etag_changes_when_content_changes_and_metadata_is_replaced(store, write):
    first = store.upload_file(write(b"version 1"), "bronze", "a.tif", {"sha256": "one"})
    second = store.upload_file(write(b"version 2"), "bronze", "a.tif")

    assert second.etag != first.etag
    assert store.info("bronze", "a.tif").etag == second.etag
    # A blob replaced without metadata does not keep the old blob's metadata.
    assert store.info("bronze", "a.tif").metadata == {}


@pytest.mark.unit
def test_a_local_blob_replaced_by_hand_keeps_no_stale_metadata(tmp_path, write):
    # The checksum in the metadata is trusted by validation and by ingest's "unchanged,
    # don't upload again": it must not outlive the bytes it was computed from.
    store = LocalBlobStore(root=str(tmp_path / "blobs"))
    store.upload_file(write(b"version 1"), "bronze", "a.tif", {"sha256": "one"})
    (tmp_path / "blobs" / "bronze" / "a.tif").write_bytes(b"version 2, copied in by hand")
    assert store.info("bronze", "a.tif").metadata == {}
    [listed] = store.list_blobs("bronze")
    assert listed.metadata == {}


def test_listing_is_in_key_order_and_filtered_by_prefix(store, write):
    # Walking folders would list b.tif before a/x.tif, and a0.tif before a/x.tif.
    keys = ["b.tif", "a/x.tif", "a0.tif", "a.tif", "a/b/c.tif", "ab/c.tif", "a-b.tif"]
    source = write(b"x")
    for key in random.Random(1).sample(keys, len(keys)):
        store.upload_file(source, "bronze", key)

    def listed(prefix: str = "", container: str = "bronze") -> list[str]:
        return [blob.key for blob in store.list_blobs(container, prefix)]

    assert listed() == sorted(keys)
    assert listed("a/") == ["a/b/c.tif", "a/x.tif"]
    assert listed("a") == sorted(k for k in keys if k.startswith("a"))
    assert listed("zzz") == []
    assert listed(container="silver") == []


def test_listing_follows_pages_past_5000_blobs(store, write):
    source = write(b"tiny")
    keys = [f"scenes/{i:05d}.tif" for i in range(PAGED_BLOB_COUNT)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda key: store.upload_file(source, "bronze", key), keys))

    listed = [blob.key for blob in store.list_blobs("bronze", "scenes/")]

    assert listed == keys
    # Page by page with a resumable token, as the sensor lists across ticks.
    paged, token, pages = [], None, 0
    while True:
        page = store.list_page("bronze", token, 2_000)
        paged += [blob.key for blob in page.blobs]
        pages += 1
        token = page.next_token
        if token is None:
            break
        assert len(token) < 1_000
    assert paged == keys and pages == 3


def test_a_page_token_resumes_after_blobs_added_or_removed_meanwhile(store, write):
    source = write(b"x")
    for key in ["a/1.tif", "a/2.tif", "b/1.tif", "c.tif"]:
        store.upload_file(source, "bronze", key)
    first = store.list_page("bronze", None, 2)
    assert [b.key for b in first.blobs] == ["a/1.tif", "a/2.tif"]
    assert first.blobs[0].stored_at is not None
    store.delete("bronze", "b/1.tif")
    store.upload_file(source, "bronze", "b/0.tif")
    rest = store.list_page("bronze", first.next_token, 10)
    assert [b.key for b in rest.blobs] == ["b/0.tif", "c.tif"]
    assert rest.next_token is None
    assert store.list_page("empty", None, 10).blobs == []


def test_local_file_has_the_blob_bytes_and_a_temporary_copy_is_removed(store, write):
    data = os.urandom(10_000)
    store.upload_file(write(data), "bronze", "landsat/scene.tif")

    with store.local_file("bronze", "landsat/scene.tif") as path:
        assert path.read_bytes() == data
        assert path.name == "scene.tif"

    if isinstance(store, AzureBlobStore):
        assert not path.exists()
        with pytest.raises(RuntimeError), store.local_file("bronze", "landsat/scene.tif") as path:
            raise RuntimeError("the caller failed")
        assert not path.exists()


def test_multi_megabyte_round_trip_keeps_every_byte(store, write):
    # Above the single-request limit, so Azure uploads it in blocks.
    data = os.urandom(12 * 1024**2 + 123)
    source = write(data)

    uploaded = store.upload_file(source, "silver", "big/scene.tif")
    with store.local_file("silver", "big/scene.tif") as path:
        assert _sha256(path) == _sha256(source)
    info = store.info("silver", "big/scene.tif")
    assert uploaded.size == info.size == len(data)
    assert uploaded.content_md5 == info.content_md5
    assert info.content_md5 in (None, hashlib.md5(data).hexdigest())


def test_concurrent_uploads_of_one_blob_all_succeed_and_leave_one_whole_version(store, write):
    """Two ingests of one file at once upload the same tier keys: Azure's block uploads
    of one blob by two writers used to fail with InvalidBlockList."""
    from concurrent.futures import ThreadPoolExecutor

    sources = [write(os.urandom(10 * 1024**2 + n)) for n in range(3)]
    with ThreadPoolExecutor(len(sources)) as pool:
        infos = list(pool.map(lambda s: store.upload_file(s, "silver", "same/key.tif"), sources))
    assert len(infos) == 3
    with store.local_file("silver", "same/key.tif") as path:
        assert _sha256(path) in {_sha256(source) for source in sources}
        assert path.stat().st_size == store.info("silver", "same/key.tif").size


def test_a_staged_file_replaces_the_blob_only_when_committed(store, write):
    """The vector export is staged while its table is indexed: until the table is swapped
    in, readers keep the old export, and an uncommitted stage changes nothing."""
    old, new, dropped = (write(os.urandom(9 * 1024**2 + n)) for n in range(3))
    old_sha256, new_sha256 = _sha256(old), _sha256(new)  # a staged file is the store's
    store.upload_file(old, "silver", "staged/table.parquet")
    commit = store.stage_file(new, "silver", "staged/table.parquet")
    store.stage_file(dropped, "silver", "staged/table.parquet")  # never committed
    with store.local_file("silver", "staged/table.parquet") as path:
        assert _sha256(path) == old_sha256
    info = commit()
    with store.local_file("silver", "staged/table.parquet") as path:
        assert _sha256(path) == new_sha256
    assert info.size == store.info("silver", "staged/table.parquet").size == 9 * 1024**2 + 1
    # Into a container that does not exist yet, as the first export of a deployment.
    assert store.stage_file(write(os.urandom(9 * 1024**2)), "fresh", "t.parquet")().size > 0


def test_a_raster_with_its_sidecars_comes_down_whole_from_its_info_and_sidecars(store, write):
    uploaded = store.upload_file(write(b"pixels"), "bronze", "scenes/s.tif", {"sha256": "abc"})
    store.upload_file(write(b"<PAMDataset/>"), "bronze", "scenes/s.tif.aux.xml")
    store.upload_file(write(b"1\n0\n0\n-1\n0\n0\n"), "bronze", "scenes/s.tfw")
    store.upload_file(write(b"another raster"), "bronze", "scenes/s.backup.tif")

    info, sidecars = store.info_and_sidecars("bronze", "scenes/s.tif")
    assert info == store.info("bronze", "scenes/s.tif")
    assert (info.etag, info.metadata) == (uploaded.etag, {"sha256": "abc"})
    with store.local_file("bronze", "scenes/s.tif", sidecars=sidecars) as path:
        beside = sorted(p.name for p in path.parent.iterdir())
        assert path.read_bytes() == b"pixels"
    # Fetched with it (or in place beside it), and no other raster that shares the name.
    assert {"s.tfw", "s.tif", "s.tif.aux.xml"} <= set(beside)
    if isinstance(store, AzureBlobStore):
        assert sidecars == ["scenes/s.tfw", "scenes/s.tif.aux.xml"]
        assert beside == ["s.tfw", "s.tif", "s.tif.aux.xml"]
    with pytest.raises(FileNotFoundError):
        store.info_and_sidecars("bronze", "scenes/s.png")


def test_a_run_lists_its_rasters_and_their_sidecars_at_once_as_each_would_alone(
    store, write, monkeypatch
):
    for key in ("scenes/s.tif", "scenes/s.tif.aux.xml", "scenes/s.tfw", "scenes/s.backup.tif"):
        store.upload_file(write(key.encode()), "bronze", key)
    store.upload_file(write(b"t"), "bronze", "scenes/t.tif")
    keys = ["scenes/s.tif", "scenes/t.tif", "scenes/gone.tif"]

    listed = store.infos_and_sidecars("bronze", keys)
    if isinstance(store, LocalBlobStore):
        assert listed == {}  # each stat is as cheap as a listing: each raster asks alone
        return
    # A missing key is left out: its worker finds it missing, with its own error.
    assert listed == {key: store.info_and_sidecars("bronze", key) for key in keys[:2]}
    assert listed["scenes/s.tif"][1] == ["scenes/s.tfw", "scenes/s.tif.aux.xml"]
    # A sidecar removed since the listing: the raster is to be listed again, not missing.
    store.delete("bronze", "scenes/s.tfw")
    with pytest.raises(BlobChangedError, match=r"sidecar scenes/s\.tfw is gone"):
        with store.local_file("bronze", "scenes/s.tif", sidecars=listed["scenes/s.tif"][1]):
            pass
    # A common prefix that holds more than the budget: no listing worth it, nothing.
    monkeypatch.setattr(azure_blob_store, "_BATCH_LISTED_AT_MOST", (3, 0))
    assert store.infos_and_sidecars("bronze", keys) == {}


def test_a_raster_replaced_after_its_run_listed_it_is_made_from_its_new_version(
    store, write, tmp_path
):
    """The run lists its rasters when it starts; one replaced before its turn is read again
    (not its new bytes under the old ETag, which its events would record)."""
    from geo_platform.lib.raster.tiers import Tier
    from geo_platform.processing import raster as processing
    from geo_platform.settings import LimitSettings, PriceSettings, TilingSettings

    def version(value: int) -> Path:
        path = tmp_path / f"v{value}.tif"
        transform = rasterio.transform.from_origin(5e5, 5e6, 10, 10)
        profile = {"driver": "GTiff", "width": 32, "height": 32, "count": 1, "dtype": "uint8"}
        profile |= {"crs": "EPSG:32633", "transform": transform}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(np.full((1, 32, 32), value, dtype="uint8"))
        return path

    store.upload_file(version(1), "bronze", "c/r.tif")
    listed = store.info_and_sidecars("bronze", "c/r.tif")
    replaced = store.upload_file(version(2), "bronze", "c/r.tif")
    with pytest.raises(BlobChangedError, match=r"bronze/c/r\.tif: changed since it was listed"):
        with store.local_file("bronze", "c/r.tif", etag=listed[0].etag):
            pass
    (tmp_path / "scratch").mkdir()  # the run's, made when it starts
    ctx = processing.RasterContext(
        blob_store=store,
        limits=LimitSettings(),
        prices=PriceSettings(),
        scratch=tmp_path / "scratch",
        tiling=TilingSettings(),
    )
    plan = processing.RasterPlan(tiers=(Tier.ANALYSIS,), item=True, checks=frozenset())
    outcome = processing.process_raster("c/r.tif", plan, ctx, None, listed)
    assert outcome.error is None, outcome.error
    assert outcome.source_etag == replaced.etag != listed[0].etag
    assert outcome.info is not None and outcome.info.sha256 == _sha256(version(2))


@pytest.mark.integration
@pytest.mark.parametrize("upload", ["upload_file", "stage_file"])
def test_bytes_altered_on_the_way_to_azure_are_refused_and_the_old_blob_stays(
    azurite_service, write, monkeypatch, upload
):
    """Every block carries its MD5: a bronze copy or export whose bytes change in transit
    fails (transient: sending them again is the remedy) instead of being stored altered."""

    def alter_first_block(pipeline_request) -> None:
        request = pipeline_request.http_request
        if request.method == "PUT" and "comp=block&" in request.url + "&":
            altered = bytearray(request.data)
            altered[0] ^= 0xFF
            request.data = bytes(altered)

    prefix = f"t{uuid.uuid4().hex[:12]}-"
    store = AzureBlobStore(connection_string=_azurite_connection_string(), container_prefix=prefix)
    old, new = write(os.urandom(9 * 1024**2)), write(os.urandom(9 * 1024**2 + 1))
    old_sha256 = _sha256(old)
    store.upload_file(old, "bronze", "c/big.gpkg")
    connect = BlobServiceClient.from_connection_string
    monkeypatch.setattr(
        azure_blob_store.BlobServiceClient,
        "from_connection_string",
        lambda *args, **kwargs: connect(*args, **kwargs, raw_request_hook=alter_first_block),
    )
    altered = AzureBlobStore(
        connection_string=_azurite_connection_string(), container_prefix=prefix
    )
    try:
        with pytest.raises(TransientError, match="altered in transit"):
            if upload == "upload_file":
                altered.upload_file(new, "bronze", "c/big.gpkg")
            else:
                altered.stage_file(new, "bronze", "c/big.gpkg")()
        with store.local_file("bronze", "c/big.gpkg") as path:
            assert _sha256(path) == old_sha256
    finally:
        for container in azurite_service.list_containers(name_starts_with=prefix):
            azurite_service.delete_container(container.name)


def test_a_missing_blob_is_reported_as_missing(store, write):
    with pytest.raises(FileNotFoundError):
        store.info("bronze", "nope.tif")
    with pytest.raises(FileNotFoundError), store.local_file("bronze", "nope.tif"):
        pass
    assert not store.exists("bronze", "nope.tif")

    store.upload_file(write(b"x"), "bronze", "folder/there.tif")
    assert store.exists("bronze", "folder/there.tif")
    # A key prefix is not a blob, even where the local backend has a folder.
    assert not store.exists("bronze", "folder")
    with pytest.raises(FileNotFoundError):
        store.info("bronze", "folder")


def test_delete_removes_the_blob_and_is_idempotent(store, write):
    store.upload_file(write(b"x"), "bronze", "a.tif")

    store.delete("bronze", "a.tif")
    store.delete("bronze", "a.tif")
    store.delete("never-created", "a.tif")

    assert not store.exists("bronze", "a.tif")
    assert list(store.list_blobs("bronze")) == []


@pytest.mark.parametrize("key", ["../x.tif", "a/../../x.tif", "/etc/passwd", "", "folder/"])
def test_keys_that_could_escape_their_container_are_rejected(store, write, key):
    source = write(b"x")
    operations = [
        lambda: store.upload_file(source, "bronze", key),
        lambda: store.info("bronze", key),
        lambda: store.exists("bronze", key),
        lambda: store.delete("bronze", key),
        lambda: store.href("bronze", key),
        lambda: store.gdal_path("bronze", key),
    ]
    for operation in operations:
        with pytest.raises(ValueError, match="invalid blob key"):
            operation()
    with pytest.raises(ValueError, match="invalid blob key"), store.local_file("bronze", key):
        pass


def test_gdal_reads_the_same_pixels_as_the_local_file(store, real_rasters):
    source, replacement = real_rasters / "image_rgb.tif", real_rasters / "image_float.tif"
    store.upload_file(source, "silver", "rasters/image.tif")

    def read_back() -> np.ndarray:
        with (
            rasterio.Env(**store.gdal_env()),
            rasterio.open(store.gdal_path("silver", "rasters/image.tif")) as dataset,
        ):
            return dataset.read()

    with rasterio.open(source) as expected:
        assert np.array_equal(read_back(), expected.read())

    # A re-run overwrites the blob: GDAL must not serve the old bytes from its cache.
    store.upload_file(replacement, "silver", "rasters/image.tif")
    with rasterio.open(replacement) as expected:
        np.testing.assert_array_equal(read_back(), expected.read())


@pytest.mark.unit
@pytest.mark.parametrize("operation", ["info", "list_blobs", "upload_file", "local_file"])
def test_unreachable_azure_storage_is_a_quick_transient_error(write, operation):
    # Port 1 is closed: the same answer as a stopped Azurite.
    connection_string = AZURITE_CONNECTION_STRING.replace("127.0.0.1:10000", "127.0.0.1:1")
    account_key = dict(p.split("=", 1) for p in connection_string.split(";") if p)["AccountKey"]
    store = AzureBlobStore(connection_string=connection_string)
    calls = {
        "info": lambda: store.info("bronze", "a.tif"),
        "list_blobs": lambda: list(store.list_blobs("bronze")),
        "upload_file": lambda: store.upload_file(write(b"x"), "bronze", "a.tif"),
        "local_file": lambda: store.local_file("bronze", "a.tif").__enter__(),
    }

    with pytest.raises(TransientError) as raised:
        calls[operation]()

    message = str(raised.value)
    assert "http://127.0.0.1:1/devstoreaccount1" in message
    assert "Connection refused" in message
    assert account_key not in message
    assert account_key not in repr(store)


@pytest.mark.unit
def test_azure_rejects_names_it_would_refuse_before_any_request(write):
    store = AzureBlobStore(connection_string=AZURITE_CONNECTION_STRING.replace("10000", "1"))
    source = write(b"x")

    with pytest.raises(ValueError, match="metadata name"):
        store.upload_file(source, "bronze", "a.tif", {"source-etag": "x"})
    with pytest.raises(ValueError, match="container name"):
        store.upload_file(source, "Bronze_Tier", "a.tif")
