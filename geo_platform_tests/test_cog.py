import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from geo_platform.lib.raster.cog import write_cog_tiers
from geo_platform.lib.raster.compare import compare_copies, compare_pixels
from geo_platform.lib.raster.thumbnail import thumbnail_png
from geo_platform.lib.raster.tiers import Tier, parse_output_tier, tier_blob_key

from .conftest import REAL_RASTER_TIERS

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", sorted(REAL_RASTER_TIERS))
def test_every_tier_is_a_valid_cog_and_lossless_tiers_keep_every_pixel(
    real_rasters, tmp_path, name
):
    tiers = [Tier(t) for t in sorted(REAL_RASTER_TIERS[name])]
    cogs = write_cog_tiers(real_rasters / name, tiers, tmp_path)
    assert set(cogs) == set(tiers)
    for tier, cog in cogs.items():
        is_valid, errors, _ = cog_validate(str(cog.path), quiet=True)
        assert is_valid, f"{name} {tier}: {errors}"
        with rasterio.open(cog.path) as dst:
            assert dst.overviews(1) or max(dst.width, dst.height) <= 512
            expected = {Tier.VISUALIZATION: "jpeg", Tier.ANALYSIS: "deflate", Tier.ARCHIVE: "lzw"}
            assert dst.compression.value.lower() == expected[tier]
        if tier is not Tier.VISUALIZATION:
            comparison = compare_pixels(real_rasters / name, cog.path)
            assert comparison.identical, comparison.problems


def test_visualization_of_rgba_is_ycbcr_jpeg_with_the_alpha_as_mask(real_rasters, tmp_path):
    cog = write_cog_tiers(real_rasters / "image_rgba.tif", [Tier.VISUALIZATION], tmp_path)[
        Tier.VISUALIZATION
    ]
    with rasterio.open(real_rasters / "image_rgba.tif") as src, rasterio.open(cog.path) as dst:
        assert dst.count == 3
        assert dst.tags(ns="IMAGE_STRUCTURE").get("SOURCE_COLOR_SPACE") == "YCbCr"
        assert (dst.read_masks(1) == src.read(4)).mean() > 0.99


def test_tiers_of_one_source_are_deterministic(real_rasters, tmp_path):
    first = write_cog_tiers(real_rasters / "image_rgb_mask.tif", list(Tier), tmp_path / "a")
    second = write_cog_tiers(real_rasters / "image_rgb_mask.tif", list(Tier), tmp_path / "b")
    assert {t: c.sha256 for t, c in first.items()} == {t: c.sha256 for t, c in second.items()}


def test_single_tier_and_shared_overview_paths_hold_the_same_pixels(real_rasters, tmp_path):
    alone = write_cog_tiers(real_rasters / "image_nan.tif", [Tier.ANALYSIS], tmp_path / "a")
    shared = write_cog_tiers(real_rasters / "image_nan.tif", list(Tier)[1:], tmp_path / "b")
    assert compare_pixels(alone[Tier.ANALYSIS].path, shared[Tier.ANALYSIS].path).identical


def test_compare_pixels_notices_a_changed_pixel(real_rasters, tmp_path):
    cog = write_cog_tiers(real_rasters / "image_nodata.tif", [Tier.ANALYSIS], tmp_path)[
        Tier.ANALYSIS
    ]
    with rasterio.open(cog.path) as src:
        profile, data = src.profile, src.read()
    data[0, 10, 10] += 1
    changed = tmp_path / "changed.tif"
    with rasterio.open(changed, "w", **profile) as dst:
        dst.write(data)
    result = compare_pixels(real_rasters / "image_nodata.tif", changed)
    assert not result.identical and "pixel values differ" in result.problems[0]


def test_thumbnail_is_a_small_png(real_rasters):
    png = thumbnail_png(real_rasters / "image_colormap.tif")
    assert png.startswith(b"\x89PNG")
    assert len(png) < 40_000


def test_tier_paths_and_output_tier_choices():
    sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    assert (
        tier_blob_key(Tier.ANALYSIS, "landsat/2024/a.tif", sha)
        == "landsat/2024/a.analysis.9f86d081884c.tif"
    )
    assert tier_blob_key(Tier.ARCHIVE, "x/scene.png", sha) == "x/scene.png.archive.9f86d081884c.tif"
    assert parse_output_tier("both") == (Tier.VISUALIZATION, Tier.ANALYSIS)
    with pytest.raises(ValueError, match="not one of"):
        parse_output_tier("best")


def test_compare_copies_judges_each_copy_and_notices_a_lost_mask(real_rasters, tmp_path):
    source = real_rasters / "image_rgb_mask.tif"
    good = write_cog_tiers(source, [Tier.ANALYSIS], tmp_path)[Tier.ANALYSIS].path
    unmasked = tmp_path / "unmasked.tif"  # the same pixels without the mask band
    with rasterio.open(source) as src:
        profile, data = src.profile, src.read()
    with rasterio.open(unmasked, "w", **profile) as dst:
        dst.write(data)
    results = compare_copies(source, [good, unmasked])
    assert results[0].identical
    assert not results[1].identical and "mask differs" in results[1].problems[0]
