"""Rasters over the tiling threshold: tiles, their items and lineage, the mosaic, and the
replacement of a changed big raster's tiles (small thresholds: the suite stays fast)."""

import shutil

import dagster as dg
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from geo_platform.backends import blob_store, stac_catalog
from geo_platform.ingest import ingest
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.raster.compare import compare_pixels
from geo_platform.lib.raster.tiling import tile_grid
from geo_platform.lib.stac.validation import validate_item
from geo_platform.processing.raster import remove_raster

TILE = 512
# 512 x 512 (262,144 pixels) stays whole; anything bigger is tiled.
THRESHOLD = 300_000


@pytest.fixture
def tiled(settings, monkeypatch):
    monkeypatch.setenv("GEO_PLATFORM_TILING_THRESHOLD_PIXELS", str(THRESHOLD))
    monkeypatch.setenv("GEO_PLATFORM_TILING_TILE_SIZE", str(TILE))
    return settings


def masked_uint16(path, width=1300, height=900):
    """A single-band uint16 with an internal mask band (no nodata): a ring of invalid
    pixels and a hole that cross tile boundaries."""
    rows, cols = np.mgrid[0:height, 0:width]
    data = ((rows * 7 + cols * 13) % 4000).astype("uint16")[None]
    mask = np.full((height, width), 255, "uint8")
    mask[:37, :] = mask[:, -45:] = 0
    mask[480:560, 500:530] = 0
    profile = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint16")
    profile |= dict(crs="EPSG:32633", transform=from_origin(4e5, 5.6e6, 2.0, 2.0))
    profile |= dict(tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.write_mask(mask)
    return path


@pytest.mark.unit
@pytest.mark.parametrize(
    ("width", "height", "size"), [(1500, 1500, 512), (1024, 513, 512), (7, 5, 512)]
)
def test_tiles_cover_every_pixel_exactly_once_on_the_source_grid(width, height, size):
    tiles = tile_grid(width, height, size)
    covered = np.zeros((height, width), "uint8")
    for tile in tiles:
        assert tile.col_off % size == 0 and tile.row_off % size == 0
        covered[
            tile.row_off : tile.row_off + tile.height, tile.col_off : tile.col_off + tile.width
        ] += 1
    assert (covered == 1).all()
    assert tile_grid(width, height, size) == tiles  # deterministic
    assert len({t.name for t in tiles}) == len(tiles)


@pytest.mark.asset
def test_a_big_raster_becomes_tiles_with_lineage_and_a_mosaic_that_is_the_source(
    tiled, copy_real, instance
):
    settings = tiled
    folder = copy_real("image_2000px.tif", "image_colormap.tif", "image_rgb.tif")
    masked_uint16(folder / "masked.tif")
    outcomes = ingest([folder], collection="big", output_tier=None, settings=settings)
    assert [o.message for o in outcomes if not o.ok] == []
    catalog = stac_catalog(settings)
    items = {i["id"]: i for i in catalog.search(collections=["big"], limit=None)}

    # A raster under the threshold stays whole: no tiles, its tiers as before.
    assert "image_rgb" in items and not any(i.startswith("image_rgb!") for i in items)
    assert set(items["image_rgb"]["assets"]) == {
        "visualization",
        "analysis",
        "archive",
        "thumbnail",
    }

    for name, tiers in (
        ("image_2000px", {"visualization", "analysis", "archive"}),
        ("image_colormap", {"analysis", "archive"}),
        ("masked", {"analysis", "archive"}),
    ):
        source = folder / f"{name}.tif"
        mosaic_item = items[name]
        assert validate_item(mosaic_item) == []
        with rasterio.open(source) as src:
            grid = tile_grid(src.width, src.height, TILE)
            src_transform = src.transform
            expected_ids = [f"{name}!{t.name}" for t in grid]
            assert mosaic_item["properties"]["geo_platform:tiles"] == expected_ids
            assert set(mosaic_item["assets"]) == {"mosaic"}
            # The mosaic opens as the whole raster: the source's pixels, mask, nodata,
            # colormap, transform and CRS.
            # (Embedded profile: an href is the file's path.)
            mosaic = mosaic_item["assets"]["mosaic"]["href"]
            assert compare_pixels(source, mosaic).identical, name
            for tile in grid:
                item = items[f"{name}!{tile.name}"]
                assert validate_item(item) == []
                props = item["properties"]
                assert props["geo_platform:source"] == f"big/{name}.tif"
                assert props["geo_platform:source_window"] == tile.window
                assert props["geo_platform:mosaic_item"] == name
                assert props["geo_platform:source_checksum"] == "1220" + sha256_file(source)
                assert set(item["assets"]) == tiers
                window = Window(tile.col_off, tile.row_off, tile.width, tile.height)
                for tier, asset in item["assets"].items():
                    path = asset["href"]
                    assert asset["file:checksum"] == "1220" + sha256_file(path)
                    assert cog_validate(path, quiet=True)[0], (name, tile.name, tier)
                    with rasterio.open(path) as t:
                        # Exactly on the source's grid: same pixel size, origin shifted by
                        # whole pixels, so neighbours meet with no gap and no overlap.
                        assert t.transform == src_transform * src_transform.translation(
                            tile.col_off, tile.row_off
                        )
                        assert (t.width, t.height) == (tile.width, tile.height)
                        if tier == "visualization":
                            continue
                        assert (t.read() == src.read(window=window)).all()
                        assert (t.read_masks() == src.read_masks(window=window)).all()
                        if name == "image_colormap":
                            assert t.colormap(1) == src.colormap(1)

    # Lineage in Dagster: the tier's materialization lists every tile, its window and file.
    lineages = {}
    for record in instance.fetch_materializations(dg.AssetKey("cog_analysis"), limit=10).records:
        metadata = record.asset_materialization.metadata
        if "tile_lineage" in metadata:
            lineages[record.asset_materialization.partition] = metadata["tile_lineage"].value
    lineage = lineages["big/masked.tif"]
    assert {k: v["window"] for k, v in lineage.items()} == {
        t.name: t.window for t in tile_grid(1300, 900, TILE)
    }
    for tile_name, entry in lineage.items():
        assert items[entry["item_id"]]["assets"]["analysis"]["href"] == entry["href"]
        assert entry["item_id"] == f"masked!{tile_name}"
    stac = [
        r.asset_materialization
        for r in instance.fetch_materializations(dg.AssetKey("stac_item"), limit=10).records
        if r.asset_materialization.partition == "big/masked.tif"
    ]
    assert stac[0].metadata["tile_items"].value == 6


def _stored_tile_files(store, key_stem):
    return sorted(
        (container, b.key)
        for container in ("silver", "archive")
        for b in store.list_blobs(container, f"{key_stem},tiles/")
    )


def _assert_every_asset_opens_and_matches(store, items):
    for item in items:
        for asset in item["assets"].values():
            with open(asset["href"], "rb"):
                pass
            assert asset["file:checksum"] == "1220" + sha256_file(asset["href"]), item["id"]


@pytest.mark.asset
def test_reingesting_a_changed_big_raster_replaces_its_tiles_consistently(
    tiled, copy_real, real_rasters
):
    settings = tiled
    folder = copy_real("image_2000px.tif")
    source = folder / "scene.tif"
    shutil.move(folder / "image_2000px.tif", source)
    catalog, store = stac_catalog(settings), blob_store(settings)

    def ingest_ok():
        outcomes = ingest([source], collection="swap", output_tier=None, settings=settings)
        assert [o.message for o in outcomes if not o.ok] == []
        return {i["id"]: i for i in catalog.search(collections=["swap"], limit=None)}

    first = ingest_ok()
    assert len(first) == 1 + 9
    old_files = _stored_tile_files(store, "swap/scene")
    # 9 tiles x 3 tiers, and the mosaic.
    assert len(old_files) == 9 * 3 + 1

    # A changed source of another size: 3 x 2 tiles of another raster.
    shutil.copy2(real_rasters / "image_colormap.tif", source)
    second = ingest_ok()
    expected = {"scene"} | {f"scene!r{r:04d}_c{c:04d}" for r in range(2) for c in range(3)}
    assert set(second) == expected
    _assert_every_asset_opens_and_matches(store, second.values())
    new_files = _stored_tile_files(store, "swap/scene")
    referenced = {a["href"] for i in second.values() for a in i["assets"].values()}
    assert {store.href(c, k) for c, k in new_files} == referenced
    assert set(new_files).isdisjoint(old_files)
    mosaic = second["scene"]["assets"]["mosaic"]["href"]
    assert compare_pixels(source, mosaic).identical

    # Small now: one whole raster again, and nothing of its tiles is left.
    shutil.copy2(real_rasters / "image_rgb.tif", source)
    third = ingest_ok()
    assert set(third) == {"scene"}
    assert set(third["scene"]["assets"]) == {"visualization", "analysis", "archive", "thumbnail"}
    _assert_every_asset_opens_and_matches(store, third.values())
    assert _stored_tile_files(store, "swap/scene") == []


@pytest.mark.asset
def test_a_failed_tile_stores_nothing_and_keeps_the_previous_version(
    tiled, copy_real, real_rasters, monkeypatch
):
    settings = tiled
    folder = copy_real("image_colormap.tif")
    catalog, store = stac_catalog(settings), blob_store(settings)
    ingest([folder], collection="keep", output_tier=None, settings=settings)
    before = {i["id"]: i for i in catalog.search(collections=["keep"], limit=None)}
    files = _stored_tile_files(store, "keep/image_colormap")
    shutil.copy2(real_rasters / "image_2000px.tif", folder / "image_colormap.tif")

    import geo_platform.processing.raster as processing
    from geo_platform.lib.raster.compare import Comparison

    def _differs():
        return Comparison(False, ("pixel values differ in rows 0-1 (simulated)",))

    monkeypatch.setattr(processing, "compare_pixels", lambda source, copy: _differs())
    (outcome,) = ingest([folder], collection="keep", output_tier=None, settings=settings)
    assert not outcome.ok
    assert "failed lossless in tile(s) r0000_c0000" in outcome.message
    assert {i["id"]: i for i in catalog.search(collections=["keep"], limit=None)} == before
    assert _stored_tile_files(store, "keep/image_colormap") == files
    _assert_every_asset_opens_and_matches(store, before.values())

    # Deleted from bronze: its item, its tile items and its tile files go.
    store.delete("bronze", "keep/image_colormap.tif")
    assert remove_raster("keep/image_colormap.tif", store, catalog)
    assert catalog.search(collections=["keep"], limit=None) == []
    assert _stored_tile_files(store, "keep/image_colormap") == []


@pytest.mark.asset
def test_a_tiled_raster_gates_on_every_check_and_reports_only_the_selected_ones(
    tiled, copy_real, tmp_path, monkeypatch
):
    """As for a whole raster: every check of every tile gates the raster's publication,
    and the outcome reports only the checks the run selected."""
    import geo_platform.processing.raster as processing
    from geo_platform.lib.raster.compare import Comparison
    from geo_platform.lib.raster.tiers import Tier
    from geo_platform.settings import LimitSettings, PriceSettings, TilingSettings

    settings = tiled
    store = blob_store(settings)
    folder = copy_real("image_colormap.tif")
    store.upload_file(folder / "image_colormap.tif", "bronze", "sel/image_colormap.tif")
    ctx = processing.RasterContext(
        blob_store=store,
        limits=LimitSettings(),
        prices=PriceSettings(),
        scratch=tmp_path / "scratch",
        tiling=TilingSettings(threshold_pixels=THRESHOLD, tile_size=TILE),
    )
    only_valid_cog = processing.RasterPlan(
        tiers=(Tier.ANALYSIS, Tier.ARCHIVE),
        item=True,
        checks=frozenset({("cog_analysis", "valid_cog")}),
    )
    outcome = processing.process_raster("sel/image_colormap.tif", only_valid_cog, ctx)
    assert outcome.error is None, outcome.error
    assert outcome.tile_items
    assert {(c.asset, c.name) for c in outcome.checks} == {("cog_analysis", "valid_cog")}

    # An unselected check that fails still stops the raster: nothing of it is stored.
    store.delete("bronze", "sel/image_colormap.tif")
    store.upload_file(folder / "image_colormap.tif", "bronze", "sel/other.tif")

    def _differs(source, copy):
        return Comparison(False, ("pixel values differ (simulated)",))

    monkeypatch.setattr(processing, "compare_pixels", _differs)
    outcome = processing.process_raster("sel/other.tif", only_valid_cog, ctx)
    assert outcome.error is not None and "failed lossless" in outcome.error
    assert outcome.item is None and not outcome.tiers
    assert {(c.asset, c.name) for c in outcome.checks} == {("cog_analysis", "valid_cog")}
    assert _stored_tile_files(store, "sel/other") == []
