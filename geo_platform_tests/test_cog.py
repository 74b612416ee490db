import numpy as np
import pytest
import rasterio
from rasterio.enums import MaskFlags
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from geo_platform.errors import ConfigurationError
from geo_platform.lib.collections_config import configured_resampling, load_collections_config
from geo_platform.lib.raster.cog import choose_resampling, parse_resampling, write_cog_tiers
from geo_platform.lib.raster.compare import compare_copies, compare_pixels
from geo_platform.lib.raster.describe import describe_cog, human_bytes
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


def test_thumbnail_is_a_png_of_about_256_pixels(real_rasters, tmp_path):
    png = tmp_path / "thumbnail.png"
    png.write_bytes(thumbnail_png(real_rasters / "image_colormap.tif"))
    with rasterio.open(png) as image:
        assert image.driver == "PNG" and max(image.width, image.height) == 256
        assert image.count == 4  # masked pixels transparent


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


def _class_raster(path, dtype="uint8"):
    """Classes 10 and 50 in irregular patches (no palette): a land-cover map in little."""
    rng = np.random.default_rng(3)
    patches = rng.choice(np.array([10, 50], dtype=dtype), size=(192, 192))
    data = np.kron(patches, np.ones((8, 8), dtype=dtype))  # 1536 x 1536, patches of 8 px
    data[::3, ::5] = np.where(data[::3, ::5] == 10, 50, 10)  # and speckles of the other
    with rasterio.open(
        path, "w", driver="GTiff", width=1536, height=1536, count=1, dtype=dtype,
        crs="EPSG:32632", transform=from_origin(500_000, 5_000_000, 10, 10),
    ) as dst:  # fmt: skip
        dst.write(data, 1)
    return path


def _overview_values(path):
    with rasterio.open(path) as src:
        assert src.overviews(1), "no overviews to look at"
        return {
            value
            for factor in src.overviews(1)
            for value in np.unique(
                src.read(1, out_shape=(src.height // factor, src.width // factor))
            ).tolist()
        }


@pytest.mark.parametrize("tiers", [[Tier.ANALYSIS], [Tier.ANALYSIS, Tier.ARCHIVE]])
def test_overviews_of_a_class_raster_hold_only_its_classes(tmp_path, tiers):
    source = _class_raster(tmp_path / "classes.tif")
    cogs = write_cog_tiers(source, tiers, tmp_path / "out")
    for cog in cogs.values():
        assert _overview_values(cog.path) == {10, 50}  # never 30
        assert cog.resampling.name == "mode"
        assert "2 distinct values" in cog.resampling.reason


def test_continuous_data_is_averaged_and_a_collection_can_choose(real_rasters, tmp_path):
    with rasterio.open(real_rasters / "image_nodata.tif") as src:
        assert choose_resampling(src).name == "average"
        assert choose_resampling(src, "nearest").reason == "set by the collection"
    with rasterio.open(real_rasters / "image_colormap.tif") as src:
        assert choose_resampling(src).name == "nearest"
    source = _class_raster(tmp_path / "classes.tif")
    averaged = write_cog_tiers(source, [Tier.ANALYSIS], tmp_path / "avg", resampling="average")
    assert _overview_values(averaged[Tier.ANALYSIS].path) - {10, 50}  # values in between
    assert averaged[Tier.ANALYSIS].resampling.name == "average"
    with pytest.raises(ValueError, match="not one of"):
        parse_resampling("smooth")


def test_collections_file_resampling_is_checked(tmp_path):
    config = tmp_path / "collections.yaml"
    config.write_text("landcover:\n  resampling: Mode\n")
    assert configured_resampling("landcover", load_collections_config(config)) == "mode"
    assert configured_resampling("other", load_collections_config(config)) is None
    config.write_text("landcover:\n  resampling: smooth\n")
    with pytest.raises(ConfigurationError, match=r"landcover.*resampling 'smooth'"):
        load_collections_config(config)


@pytest.fixture(scope="module")
def rgb_with_nodata(real_rasters, tmp_path_factory):
    """The real geostationary RGB disk with nodata 0 and no mask of its own: space is 0,
    and so are some dark pixels of the Earth once JPEG has had them."""
    path = tmp_path_factory.mktemp("nodata") / "rgb_nodata.tif"
    # Its pixels and nodata copied without its mask (gdal_translate -mask none; Debian's
    # gdal-bin is a benchmark dependency, not the tests').
    with rasterio.open(real_rasters / "image_geos.tif") as src:
        with rasterio.open(path, "w", **src.profile) as dst:
            dst.write(src.read())
    with rasterio.open(path) as src:
        assert src.nodata == 0 and src.count == 3 and src.dtypes[0] == "uint8"
        assert all(MaskFlags.nodata in flags for flags in src.mask_flag_enums)
    return path


@pytest.mark.parametrize("tiers", [[Tier.VISUALIZATION], [Tier.ANALYSIS, Tier.VISUALIZATION]])
def test_visualization_of_a_raster_with_nodata_masks_exactly_its_valid_pixels(
    rgb_with_nodata, tmp_path, tiers
):
    cogs = write_cog_tiers(rgb_with_nodata, tiers, tmp_path)
    visualization = cogs[Tier.VISUALIZATION].path
    assert cog_validate(str(visualization), quiet=True)[0]
    with rasterio.open(rgb_with_nodata) as src, rasterio.open(visualization) as dst:
        assert dst.compression.value == "JPEG" and dst.nodata is None
        assert all(flags == [MaskFlags.per_dataset] for flags in dst.mask_flag_enums)
        expected = src.dataset_mask()
        assert 0 < (expected == 0).sum() < expected.size
        assert np.array_equal(dst.dataset_mask(), expected)
        # Without the mask, the JPEG's own zeros would not be the source's nodata pixels.
        assert not np.array_equal(np.where(dst.read().any(axis=0), 255, 0), expected)
    if Tier.ANALYSIS in cogs:  # the lossless tier keeps the nodata value itself
        assert compare_pixels(rgb_with_nodata, cogs[Tier.ANALYSIS].path).identical


def test_described_tier_reads_as_a_gis_user_expects(real_rasters, tmp_path):
    cog = write_cog_tiers(real_rasters / "image_2000px.tif", [Tier.ANALYSIS], tmp_path)
    path = cog[Tier.ANALYSIS].path
    described = describe_cog(path, source_size=path.stat().st_size * 4, crs="EPSG:4326")
    assert described["size_vs_source"] == "25 % of the source"
    assert described["size"].endswith(" kB") or described["size"].endswith(" MB")
    assert described["crs"] == "EPSG:4326"
    assert described["dimensions"] == "1500 x 1500 px, 3 band(s)"
    assert described["data_type"] == "uint8"
    assert described["block_size"] == "512 x 512"
    assert described["overview_levels"] == "1/2, 1/4"
    assert described["compression"] == "DEFLATE"
    assert human_bytes(1_234_567) == "1.2 MB" and human_bytes(999) == "999 B"


def test_written_tiers_are_checked_on_threads_kept_between_calls(real_rasters, tmp_path):
    """A new thread per call set GDAL and PROJ up again for every small raster (~7 ms,
    a tenth of its cost): the checks run on the same few threads call after call."""
    import os
    import threading

    threads = []

    def check(tier, path):
        threads.append(threading.current_thread())
        return cog_validate(str(path), quiet=True)[0]

    for number in range(6):
        cogs = write_cog_tiers(
            real_rasters / "image_rgb.tif", [Tier.ANALYSIS], tmp_path / str(number), check=check
        )
        assert cogs[Tier.ANALYSIS].check is True
    assert threading.main_thread() not in threads
    assert len(set(threads)) <= (os.cpu_count() or 1) < len(threads)
