"""The whole raster slice on the embedded profile: bronze -> tiers -> item -> catalog."""

import json
import shutil
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import rasterio
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate

from geo_platform.backends import blob_store, stac_catalog
from geo_platform.cli import main
from geo_platform.ingest import ingest
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.raster.compare import compare_pixels
from geo_platform.lib.stac.bbox import union_bbox
from geo_platform.lib.stac.validation import validate_item

from . import bad_inputs
from .conftest import REAL_RASTER_TIERS
from .tier_blobs import thumbnail_blobs, tier_blob, tier_blobs

pytestmark = pytest.mark.asset


def test_every_real_raster_goes_all_the_way(profile_settings, copy_real):
    settings = profile_settings
    folder = copy_real(*REAL_RASTER_TIERS)
    outcomes = ingest([folder], collection="real", output_tier=None, settings=settings)
    assert [o.message for o in outcomes if not o.ok] == []
    assert len(outcomes) == len(REAL_RASTER_TIERS)

    catalog, store = stac_catalog(settings), blob_store(settings)
    items = {i["id"]: i for i in catalog.search(collections=["real"], limit=None)}
    assert len(items) == len(REAL_RASTER_TIERS)
    for name, tiers in REAL_RASTER_TIERS.items():
        key = f"real/{name}"
        item = items[name.removesuffix(".tif")]
        assert set(item["assets"]) == tiers | {"thumbnail"}, name
        assert validate_item(item) == []
        for tier in tiers:
            container, blob = tier_blob(store, key, tier)
            assert item["assets"][tier]["href"] == store.href(container, blob)
            with store.local_file(container, blob) as path:
                assert item["assets"][tier]["file:checksum"] == "1220" + sha256_file(path)
                assert cog_validate(str(path), quiet=True)[0], f"{key} {tier}"
                if tier != "visualization":
                    assert compare_pixels(folder / name, path).identical, f"{key} {tier}"
        for tier in {"visualization", "analysis", "archive"} - tiers:
            assert tier_blobs(store, key, tier) == []
        # The thumbnail is stored beside the tiers, named after its own checksum.
        (thumbnail,) = thumbnail_blobs(store, key)
        assert item["assets"]["thumbnail"]["href"] == store.href(*thumbnail)
        with store.local_file(*thumbnail) as path, rasterio.open(path) as png:
            assert png.driver == "PNG" and max(png.width, png.height) == 256
            assert item["assets"]["thumbnail"]["file:checksum"] == "1220" + sha256_file(path)
        # Only the geostationary disk carries a date of its own (slc.tif is not ingestable).
        properties = item["properties"]
        if name == "image_geos.tif":
            assert properties["datetime"] == "2022-02-05T00:00:20Z"
            assert properties["geo_platform:datetime_source"] == "TIFFTAG_DATETIME"
        else:
            assert properties["geo_platform:datetime_source"] == "blob last modified"

    collection = catalog.get_collection("real")
    assert collection["summaries"]["geo_platform:tiers"] == ["analysis", "archive", "visualization"]
    # Items say proj:code (projection v2); the summary still gathers their EPSG codes.
    assert {3857, 4326} <= set(collection["summaries"]["proj:epsg"])
    # Every item's collection link leads to the collection's published document.
    document = store.href("gold", "stac/real/collection.json")
    for item in items.values():
        assert [(link["rel"], link["href"]) for link in item["links"]] == [("collection", document)]
    with store.local_file("gold", "stac/real/collection.json") as path:
        published = json.loads(path.read_text())
    assert published["id"] == "real" and published["extent"] == collection["extent"]
    # The geostationary disk crosses 180 degrees: so does the extent, the short way round.
    extent = collection["extent"]["spatial"]["bbox"][0]
    assert extent == pytest.approx(union_bbox(i["bbox"] for i in items.values()))
    assert extent[0] > extent[2] and extent[3] >= max(i["bbox"][3] for i in items.values())


def test_bad_files_fail_alone_with_their_reason(profile_settings, copy_real, real_rasters):
    settings = profile_settings
    folder = copy_real("image_rgb.tif", "image_float.tif", folder="batch")
    shutil.copy2(real_rasters / "nontiff.jpg", folder / "nontiff.jpg")
    bad_inputs.truncated_geotiff(real_rasters / "image_rgba.tif", folder / "truncated.tif")
    bad_inputs.zero_bytes(folder / "empty.tif")
    bad_inputs.no_crs(folder / "nocrs.tif")
    bad_inputs.huge_header(folder / "huge.tif")
    bad_inputs.not_an_image(folder / "readings.tif")
    sources = {p.name: p.read_bytes() for p in folder.iterdir()}

    outcomes = {
        o.blob_key: o
        for o in ingest([folder], collection="batch", output_tier=None, settings=settings)
    }
    assert outcomes["batch/image_rgb.tif"].ok and outcomes["batch/image_float.tif"].ok
    expected = {
        "nontiff.jpg": "not georeferenced",
        "truncated.tif": "truncated or corrupt",
        "empty.tif": "empty file",
        "nocrs.tif": "no CRS",
        "huge.tif": "over the limit",
        "readings.tif": "not a readable raster",
    }
    catalog, store = stac_catalog(settings), blob_store(settings)
    for name, problem in expected.items():
        outcome = outcomes[f"batch/{name}"]
        assert not outcome.ok
        assert outcome.message.startswith(f"bronze/batch/{name}: "), outcome.message
        assert problem in outcome.message
        for tier in ("visualization", "analysis", "archive"):
            assert tier_blobs(store, f"batch/{name}", tier) == []
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == sources
    for name, data in sources.items():
        with store.local_file("bronze", f"batch/{name}") as path:
            assert path.read_bytes() == data
    found = sorted(i["id"] for i in catalog.search(collections=["batch"]))
    assert found == ["image_float", "image_rgb"]


def test_reingesting_leaves_one_item_and_the_same_bytes(profile_settings, copy_real):
    settings = profile_settings
    folder = copy_real("image_rgb_mask.tif")
    ingest([folder], collection="again", output_tier=None, settings=settings)
    catalog, store = stac_catalog(settings), blob_store(settings)
    key = "again/image_rgb_mask.tif"

    def checksums() -> dict[str, str]:
        sums = {}
        for tier in ("visualization", "analysis", "archive"):
            with store.local_file(*tier_blob(store, key, tier)) as path:
                sums[tier] = sha256_file(path)
        return sums

    first = checksums()
    item_before = catalog.get_item("again", "image_rgb_mask")
    outcomes = ingest([folder], collection="again", output_tier=None, settings=settings)
    assert all(o.ok for o in outcomes)
    assert checksums() == first
    assert len(catalog.search(collections=["again"], limit=None)) == 1
    assert catalog.get_item("again", "image_rgb_mask") == item_before


def test_replacing_a_raster_switches_its_item_from_whole_old_tiers_to_whole_new_ones(
    profile_settings, copy_real, real_rasters, monkeypatch
):
    """New tiers go under new names: a reader holding the item sees files that exist and
    match its checksums before, during (a crash before the item is written) and after."""
    from geo_platform.resources.stac_catalog import StacCatalog

    settings = profile_settings
    folder = copy_real("image_rgb.tif")
    key = "swap/image_rgb.tif"
    assert all(
        o.ok for o in ingest([folder], collection="swap", output_tier=None, settings=settings)
    )
    catalog, store = stac_catalog(settings), blob_store(settings)
    old_item = catalog.get_item("swap", "image_rgb")

    def assert_whole(item: dict) -> set[tuple[str, str]]:
        blobs = set()
        for tier in ("visualization", "analysis", "archive"):
            asset = item["assets"][tier]
            container = "archive" if tier == "archive" else "silver"
            (blob,) = [
                b for c, b in tier_blobs(store, key, tier) if store.href(c, b) == asset["href"]
            ]
            with store.local_file(container, blob) as path:
                assert asset["file:checksum"] == "1220" + sha256_file(path), tier
                assert asset["file:size"] == path.stat().st_size
            blobs.add((container, blob))
        return blobs

    old_blobs = assert_whole(old_item)
    # A changed source whose item write dies: the old item stays, and so do its files.
    shutil.copy2(real_rasters / "image_web.tif", folder / "image_rgb.tif")

    def unreachable(self, items):
        raise RuntimeError("catalog gone (simulated crash)")

    with monkeypatch.context() as patch:
        patch.setattr(StacCatalog, "upsert_items", unreachable)
        assert not any(
            o.ok for o in ingest([folder], collection="swap", output_tier=None, settings=settings)
        )
    assert catalog.get_item("swap", "image_rgb") == old_item
    assert assert_whole(old_item) == old_blobs

    assert all(
        o.ok for o in ingest([folder], collection="swap", output_tier=None, settings=settings)
    )
    new_item = catalog.get_item("swap", "image_rgb")
    expected = "1220" + sha256_file(real_rasters / "image_web.tif")
    assert new_item["properties"]["geo_platform:source_checksum"] == expected
    new_blobs = assert_whole(new_item)
    assert new_blobs.isdisjoint(old_blobs)
    # Old versions, and the new ones the crashed run left, are gone: one per tier.
    for tier in ("visualization", "analysis", "archive"):
        assert len(tier_blobs(store, key, tier)) == 1, tier
    (thumbnail,) = thumbnail_blobs(store, key)
    assert new_item["assets"]["thumbnail"]["href"] == store.href(*thumbnail)


def test_output_tier_per_run_and_per_collection(settings, copy_real):
    folder = copy_real("image_rgb.tif")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.collections_path.write_text("viz_only:\n  output_tier: visualization\n")
    ingest([folder], collection="viz_only", output_tier=None, settings=settings)
    ingest([folder], collection="per_run", output_tier="archive", settings=settings)
    catalog = stac_catalog(settings)
    viz_only = catalog.get_item("viz_only", "image_rgb")
    assert set(viz_only["assets"]) == {"visualization", "thumbnail"}
    assert set(catalog.get_item("per_run", "image_rgb")["assets"]) == {"archive", "thumbnail"}
    store = blob_store(settings)
    assert tier_blobs(store, "viz_only/image_rgb.tif", "analysis") == []


def test_runs_and_metadata_are_on_the_instance(settings, copy_real, instance):
    folder = copy_real("image_rgba.tif")
    ingest([folder], collection="ui", output_tier=None, settings=settings)
    key = "ui/image_rgba.tif"
    for asset in (
        "raster_validation",
        "cog_visualization",
        "cog_analysis",
        "cog_archive",
        "stac_item",
    ):
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        assert event is not None and event.dagster_event.partition == key, asset
    viz = instance.get_latest_materialization_event(dg.AssetKey("cog_visualization"))
    metadata = viz.asset_materialization.metadata
    assert metadata["thumbnail"].value.startswith("![thumbnail](data:image/jpeg;base64,")
    # JPEG makes the RGBA source smaller, and the figure says so the obvious way round.
    share = int(metadata["size_vs_source"].value.split(" % of the source")[0])
    assert 0 < share < 100
    source_size = (folder / "image_rgba.tif").stat().st_size
    assert share == round(100 * metadata["size_bytes"].value / source_size)
    assert metadata["size"].value.endswith(" kB")
    assert metadata["cost_per_month_usd"].value > 0
    assert metadata["storage_class"].value == "hot"
    runs = instance.get_runs()
    assert [run.job_name for run in runs] == ["raster_ingest"]
    assert runs[0].tags["dagster/asset_partition_range_start"] == key
    checks = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("cog_analysis"), "lossless")]
    )
    assert (
        checks[dg.AssetCheckKey(dg.AssetKey("cog_analysis"), "lossless")].status.value
        == "SUCCEEDED"
    )


def test_cli_ingest_and_search(settings, copy_real, real_rasters, tmp_path):
    folder = copy_real("image_web.tif", "image_nodata.tif")
    bad = shutil.copy2(real_rasters / "nontiff.jpg", tmp_path / "nontiff.jpg")
    runner = CliRunner()
    good = runner.invoke(main, ["ingest", str(folder), "--collection", "cli", "--tiers", "both"])
    assert good.exit_code == 0, good.output
    assert "ok      cli/image_web.tif  (analysis" in good.output
    assert "2 ok, 0 failed" in good.output

    mixed = runner.invoke(
        main, ["ingest", str(folder / "image_web.tif"), str(bad), "--collection", "cli"]
    )
    assert mixed.exit_code == 1
    assert "failed  cli/nontiff.jpg: bronze/cli/nontiff.jpg: not georeferenced" in mixed.output
    assert "1 ok, 1 failed" in mixed.output

    web = rasterio.open(folder / "image_web.tif")
    w, s, e, n = rasterio.warp.transform_bounds(web.crs, "EPSG:4326", *web.bounds)
    found = runner.invoke(
        main, ["stac", "search", "--bbox", f"{w},{s},{e},{n}", "--collection", "cli"]
    )
    assert found.exit_code == 0, found.output
    collection = json.loads(found.output)
    assert collection["type"] == "FeatureCollection"
    assert [f["id"] for f in collection["features"]] == ["image_web"]
    tiers = collection["features"][0]["assets"].values()
    for asset in (a for a in tiers if "geo_platform:tier" in a):
        with rasterio.open(asset["href"]) as cog:
            assert cog.width == web.width
    none = runner.invoke(main, ["stac", "search", "--datetime", "1990-01-01/1990-12-31"])
    assert json.loads(none.output)["features"] == []
    wrong = runner.invoke(main, ["stac", "search", "--bbox", "1,2,3"])
    assert wrong.exit_code == 2 and "W,S,E,N" in wrong.output


def test_a_missing_path_fails_alone_and_the_next_file_is_ingested(settings, copy_real, tmp_path):
    # The first file that exists is copied into bronze while Dagster starts: a path
    # before it that does not exist must neither stop it nor take its place.
    folder = copy_real("image_rgb.tif")
    missing = tmp_path / "nope.tif"
    outcomes = ingest(
        [missing, folder / "image_rgb.tif"],
        collection="mixed",
        output_tier="analysis",
        settings=settings,
    )
    assert [o.ok for o in outcomes] == [False, True]
    assert outcomes[0].message == f"{missing}: no such file"
    assert stac_catalog(settings).get_item("mixed", "image_rgb") is not None


def _png_with_sidecars(real_rasters, folder):
    """The real image_web.tif as a plain PNG whose position is in a world file and whose
    CRS is in a PAM .aux.xml: without its sidecars it is not georeferenced."""
    import warnings
    from xml.sax.saxutils import escape

    folder.mkdir(parents=True)
    with rasterio.open(real_rasters / "image_web.tif") as src:
        data, crs, t, bounds = src.read(), src.crs, src.transform, src.bounds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        profile = {"driver": "PNG", "width": data.shape[2], "height": data.shape[1]}
        with rasterio.open(folder / "web.png", "w", count=3, dtype="uint8", **profile) as dst:
            dst.write(data)
    centre = (t.c + t.a / 2 + t.b / 2, t.f + t.d / 2 + t.e / 2)
    (folder / "web.wld").write_text("\n".join(map(repr, [t.a, t.d, t.b, t.e, *centre])) + "\n")
    (folder / "web.png.aux.xml").write_text(
        f'<PAMDataset><SRS dataAxisToSRSAxisMapping="2,1">{escape(crs.to_wkt())}</SRS>'
        "</PAMDataset>\n"
    )
    return bounds


def test_sidecars_travel_with_their_raster_and_signed_hrefs_open(
    profile_settings, real_rasters, tmp_path, monkeypatch
):
    settings = profile_settings
    bounds = _png_with_sidecars(real_rasters, tmp_path / "png")
    outcomes = ingest([tmp_path / "png"], collection="png", output_tier=None, settings=settings)
    assert [(o.blob_key, o.ok, o.message) for o in outcomes] == [("png/web.png", True, "ok")]
    store = blob_store(settings)
    assert store.sidecar_keys("bronze", "png/web.png") == ["png/web.png.aux.xml", "png/web.wld"]
    item = stac_catalog(settings).get_item("png", "web.png")
    assert item["bbox"] == pytest.approx([bounds.left, bounds.bottom, bounds.right, bounds.top])

    # Canonical hrefs need credentials on Azure; --sign gives ones that open without.
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    runner = CliRunner()
    plain = json.loads(runner.invoke(main, ["stac", "search", "--collection", "png"]).output)
    signed = runner.invoke(main, ["stac", "search", "--collection", "png", "--sign"])
    assert signed.exit_code == 0, signed.output
    signed_assets = json.loads(signed.output)["features"][0]["assets"]
    for name, asset in plain["features"][0]["assets"].items():
        href = signed_assets[name]["href"]
        if settings.profile.value == "embedded":
            assert href == asset["href"]
            continue
        assert href.startswith(asset["href"] + "?") and "sig=" in href and "sp=r" in href
        with pytest.raises(rasterio.errors.RasterioIOError):
            rasterio.open(asset["href"])
        with rasterio.open(href) as opened:
            if name == "thumbnail":  # a PNG of ~256 px, no georeferencing
                assert opened.driver == "PNG" and max(opened.width, opened.height) == 256
            else:
                assert opened.bounds == pytest.approx(bounds)
    # The collection link resolves too: to the collection's published document.
    (link,) = [
        link for link in json.loads(signed.output)["features"][0]["links"]
        if link["rel"] == "collection"
    ]  # fmt: skip
    if settings.profile.value == "embedded":
        collection = json.loads(Path(link["href"]).read_text())
    else:
        assert "sig=" in link["href"]
        with urllib.request.urlopen(link["href"]) as answer:
            collection = json.load(answer)
    assert collection["id"] == "png" and collection["type"] == "Collection"
    assert collection["extent"]["spatial"]["bbox"][0] == pytest.approx(item["bbox"])


def test_size_limits_are_checked_before_the_download(settings, copy_real, monkeypatch):
    from geo_platform.resources.blob_store import LocalBlobStore

    folder = copy_real("image_web.tif")
    size = (folder / "image_web.tif").stat().st_size
    monkeypatch.setenv("GEO_PLATFORM_LIMIT_MAX_FILE_BYTES", str(size - 1))

    def no_download(self, container, key, **kwargs):
        raise AssertionError(f"{container}/{key} was downloaded")

    monkeypatch.setattr(LocalBlobStore, "local_file", no_download)
    [outcome] = ingest([folder], collection="big", output_tier=None, settings=settings)
    assert not outcome.ok
    assert outcome.message == (
        f"bronze/big/image_web.tif: file is {size:,} bytes, over the limit of {size - 1:,}"
    )
