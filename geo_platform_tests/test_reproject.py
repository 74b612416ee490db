"""A collection's target CRS: tiers reprojected on the way in, checked against a GDAL
warp of the source with the same parameters; a change of target CRS reprojects again."""

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform
from rasterio.windows import Window

from geo_platform.backends import blob_store, stac_catalog
from geo_platform.errors import ConfigurationError
from geo_platform.ingest import ingest
from geo_platform.lib.collections_config import load_collections_config
from geo_platform.lib.raster.compare import compare_pixels
from geo_platform.lib.raster.options import RasterOptions, parse_raster_options
from geo_platform.lib.raster.reproject import plan_warp
from geo_platform.reconcile import reconcile

from .tier_blobs import tier_blob, tier_blobs


@pytest.mark.unit
def test_the_output_grid_is_no_coarser_than_any_source_pixel(tmp_path):
    """A lon/lat raster from 10 to 60 degrees north, into Web Mercator: its pixels stretch
    with latitude, so the finest projected pixel (at 10 N) sets the resolution, finer than
    GDAL's default (which keeps the pixel count of the diagonal)."""
    path = tmp_path / "lonlat.tif"
    profile = dict(driver="GTiff", width=200, height=500, count=1, dtype="uint8")
    profile |= dict(crs="EPSG:4326", transform=from_origin(5.0, 60.0, 0.1, 0.1))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((1, 500, 200), "uint8"))
    with rasterio.open(path) as src:
        plan = plan_warp(src, "EPSG:3857", Resampling.bilinear, name="x", max_pixels=10**9)
        _, default_width, _ = calculate_default_transform(
            src.crs, "EPSG:3857", src.width, src.height, *src.bounds
        )
    # A source pixel's height at the southern edge, in metres of Web Mercator.
    (_, y0), (_, y1) = (transform("EPSG:4326", "EPSG:3857", [5.05], [lat]) for lat in (10.0, 10.1))
    ((y0,), (y1,)) = (y0, y1)
    assert plan.resolution <= (y1 - y0) * 1.0001
    assert plan.resolution == pytest.approx(y1 - y0, rel=0.02)
    assert plan.width > default_width
    assert plan.transform.a == -plan.transform.e  # square pixels


@pytest.mark.unit
def test_collection_options_and_their_errors(tmp_path):
    assert RasterOptions().resampling_for(paletted=True) is Resampling.nearest
    assert RasterOptions().resampling_for(paletted=False) is Resampling.bilinear
    assert RasterOptions(categorical=True).resampling_for(paletted=False) is Resampling.nearest
    assert parse_raster_options({"resampling": "cubic"}).resampling_for(True) is Resampling.cubic
    assert RasterOptions().made_with() == ""
    a, b = RasterOptions("EPSG:3857"), RasterOptions("EPSG:4326")
    assert (
        a.made_with() != b.made_with() and a.made_with() == RasterOptions("EPSG:3857").made_with()
    )
    path = tmp_path / "collections.yaml"
    for text, problem in (
        ("c:\n  raster:\n    target_crs: EPSG:99999999\n", "is not a CRS"),
        ("c:\n  raster:\n    resampling: smooth\n", "resampling 'smooth' is not one of"),
        ("c:\n  raster:\n    target: EPSG:3857\n", "unknown setting\\(s\\) target"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigurationError, match=problem) as error:
            load_collections_config(path)
        assert str(path) in str(error.value) and "'c'" in str(error.value)


def _proj_code(props):
    return props.get("proj:code") or f"EPSG:{props['proj:epsg']}"


def _gdal_warp(source, item):
    """What GDAL's warper makes of ``source`` on the item's grid with the item's
    resampling, read whole: data and mask (the alpha it adds where there is no nodata)."""
    props = item["properties"]
    warp = props["geo_platform:reprojection"]
    with rasterio.open(source) as src:
        add_alpha = src.nodata is None and "alpha" not in [c.name for c in src.colorinterp]
        shape = props["proj:shape"]
        options = dict(
            crs=warp["target_crs"],
            transform=rasterio.Affine(*props["proj:transform"][:6]),
            height=shape[0],
            width=shape[1],
            resampling=Resampling[warp["resampling"]],
        )
        if src.nodata is not None:
            options |= dict(src_nodata=src.nodata, nodata=src.nodata)
        # GDAL's warper gives slightly different pixels at the edges of nodata and masks
        # when the output is cut otherwise: the same strips of 512 rows as the platform.
        data, mask = [], []
        with WarpedVRT(src, add_alpha=add_alpha, **options) as vrt:
            for row in range(0, vrt.height, 512):
                window = Window(0, row, vrt.width, min(512, vrt.height - row))
                data.append(vrt.read(list(range(1, src.count + 1)), window=window))
                if add_alpha:
                    mask.append(np.where(vrt.read(vrt.count, window=window) > 0, 255, 0))
                else:
                    mask.append(vrt.dataset_mask(window=window))
    return np.concatenate(data, axis=1), np.concatenate(mask, axis=0)


@pytest.mark.asset
@pytest.mark.parametrize("target", ["EPSG:3857", "EPSG:4326"])
def test_a_collection_with_a_target_crs_gets_reprojected_tiers(settings, copy_real, target):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.collections_path.write_text(f"proj:\n  raster:\n    target_crs: '{target}'\n")
    names = ["image_nodata.tif", "image_colormap.tif", "image_rgb_mask.tif"]
    folder = copy_real(*names)
    outcomes = ingest([folder], collection="proj", output_tier=None, settings=settings)
    assert [o.message for o in outcomes if not o.ok] == []
    catalog, store = stac_catalog(settings), blob_store(settings)
    for name in names:
        key = f"proj/{name}"
        item = catalog.get_item("proj", name.removesuffix(".tif"))
        props = item["properties"]
        assert _proj_code(props) == target
        with rasterio.open(folder / name) as src:
            already = src.crs == CRS.from_user_input(target)
        if already:
            # Nothing to warp: the tiers are the source's pixels, as without a target.
            assert "geo_platform:reprojection" not in props
            for tier in ("analysis", "archive"):
                with store.local_file(*tier_blob(store, key, tier)) as path:
                    assert compare_pixels(folder / name, path).identical
            continue
        warp = props["geo_platform:reprojection"]
        # The colormap's classes are never interpolated; the rest is continuous.
        expected = "nearest" if name == "image_colormap.tif" else "bilinear"
        assert warp["resampling"] == expected
        data, mask = _gdal_warp(folder / name, item)
        for tier in ("analysis", "archive"):
            with (
                store.local_file(*tier_blob(store, key, tier)) as path,
                rasterio.open(path) as tier_file,
                rasterio.open(folder / name) as src,
            ):
                assert tier_file.crs == CRS.from_user_input(target)
                assert list(tier_file.transform)[:6] == props["proj:transform"][:6]
                assert [tier_file.height, tier_file.width] == props["proj:shape"]
                assert tier_file.nodata == src.nodata
                # Identical to a GDAL warp with the same parameters, mask included.
                assert (tier_file.read() == data).all(), (name, tier)
                assert (tier_file.dataset_mask() == mask).all(), (name, tier)
                assert (mask == 0).any() and (mask == 255).any()
                if name == "image_colormap.tif":
                    assert tier_file.colormap(1) == src.colormap(1)
                    assert set(np.unique(tier_file.read(1))) <= set(np.unique(src.read(1)))
                if name == "image_rgb_mask.tif":
                    assert MaskFlags.per_dataset in tier_file.mask_flag_enums[0]
        if "visualization" in item["assets"]:
            with store.local_file(*tier_blob(store, key, "visualization")) as path:
                with rasterio.open(path) as viz:
                    assert viz.crs == CRS.from_user_input(target)


@pytest.mark.asset
def test_changing_the_target_crs_and_reconciling_reprojects_the_collection(
    settings, copy_real, monkeypatch
):
    monkeypatch.setenv("GEO_PLATFORM_RUN_SENSOR_SETTLE_SECONDS", "0")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    config = settings.collections_path
    config.write_text("merc:\n  raster:\n    target_crs: EPSG:3857\n")
    folder = copy_real("image_nodata.tif", "image_float.tif")
    assert all(
        o.ok for o in ingest([folder], collection="merc", output_tier=None, settings=settings)
    )
    catalog, store = stac_catalog(settings), blob_store(settings)
    assert _proj_code(catalog.get_item("merc", "image_nodata")["properties"]) == "EPSG:3857"

    # Nothing changed: reconcile leaves the collection alone.
    assert reconcile(settings, collection="merc").plan.to_run == []

    config.write_text("merc:\n  raster:\n    target_crs: EPSG:4326\n")
    report = reconcile(settings, collection="merc")
    assert set(report.plan.reasons.values()) == {"collection settings changed"}
    assert sorted(k for k, _ in report.plan.to_run) == [
        "merc/image_float.tif",
        "merc/image_nodata.tif",
    ]
    assert all(o.ok for o in report.outcomes)
    for name in ("image_nodata", "image_float"):
        item = catalog.get_item("merc", name)
        assert _proj_code(item["properties"]) == "EPSG:4326"
        for tier in ("analysis", "archive"):
            # One version per tier: the EPSG:3857 ones are gone.
            (found,) = tier_blobs(store, f"merc/{name}.tif", tier)
            assert item["assets"][tier]["href"] == store.href(*found)
            with store.local_file(*found) as path, rasterio.open(path) as tier_file:
                assert tier_file.crs == CRS.from_user_input("EPSG:4326")
    assert reconcile(settings, collection="merc").plan.to_run == []

    # No target CRS any more: the rasters go back to their own CRS.
    config.write_text("merc: {}\n")
    report = reconcile(settings, collection="merc")
    assert len(report.plan.to_run) == 2 and all(o.ok for o in report.outcomes)
    item = catalog.get_item("merc", "image_nodata")
    assert "geo_platform:reprojection" not in item["properties"]
    with rasterio.open(folder / "image_nodata.tif") as src:
        assert item["properties"]["proj:shape"] == [src.height, src.width]
