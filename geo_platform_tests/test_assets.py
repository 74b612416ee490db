"""Assets through dg.materialize, with the embedded resources."""

import shutil

import dagster as dg
import pytest

from geo_platform.backends import dagster_resources, stac_catalog
from geo_platform.defs.raster.assets import cog_tiers, raster_validation
from geo_platform.defs.stac.assets import collection_summary, stac_item
from geo_platform.settings import get_platform_settings

pytestmark = pytest.mark.asset
ASSETS = [raster_validation, cog_tiers, stac_item, collection_summary]


def _land(settings, real_rasters, name, key):
    target = settings.blob_root / "bronze" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(real_rasters / name, target)


def _materialize(instance, key, selection, run_config=None):
    instance.add_dynamic_partitions("rasters", [key])
    return dg.materialize(
        ASSETS,
        selection=selection,
        partition_key=key,
        instance=instance,
        resources=dagster_resources(),
        run_config=run_config,
        raise_on_error=False,
    )


def test_a_float_raster_skips_visualization_with_the_reason(settings, instance, real_rasters):
    _land(settings, real_rasters, "image_float.tif", "dem/float.tif")
    result = _materialize(
        instance,
        "dem/float.tif",
        ["raster_validation", "cog_visualization", "cog_analysis", "stac_item"],
    )
    assert result.success
    viz = result.asset_materializations_for_node("cog_tiers")
    skipped = next(m for m in viz if m.asset_key == dg.AssetKey("cog_visualization"))
    assert "3-band uint8" in skipped.metadata["skipped"].value
    assert not (settings.blob_root / "silver" / "dem" / "float.visualization.tif").exists()
    assert (settings.blob_root / "silver" / "dem" / "float.analysis.tif").exists()
    item = stac_catalog(get_platform_settings()).get_item("dem", "float")
    assert set(item["assets"]) == {"analysis"}


def test_run_config_output_tier_writes_only_what_it_names(settings, instance, real_rasters):
    _land(settings, real_rasters, "image_rgb.tif", "rgb/a.tif")
    result = _materialize(
        instance,
        "rgb/a.tif",
        ["raster_validation", "cog_visualization", "cog_analysis", "cog_archive", "stac_item"],
        {"ops": {"cog_tiers": {"config": {"output_tier": "visualization"}}}},
    )
    assert result.success
    assert (settings.blob_root / "silver" / "rgb" / "a.visualization.tif").exists()
    assert not (settings.blob_root / "archive" / "rgb" / "a.archive.tif").exists()
    checks = {
        (c.asset_key.to_user_string(), c.check_name): c.passed
        for c in result.get_asset_check_evaluations()
    }
    assert checks[("cog_visualization", "valid_cog")] is True
    assert checks[("stac_item", "item_valid")] is True


def test_stac_item_sees_tiers_written_by_earlier_runs(settings, instance, real_rasters):
    _land(settings, real_rasters, "image_rgb.tif", "rgb/b.tif")
    assert _materialize(instance, "rgb/b.tif", ["raster_validation", "cog_archive"]).success
    assert _materialize(
        instance, "rgb/b.tif", ["raster_validation", "cog_analysis", "stac_item"]
    ).success
    item = stac_catalog(get_platform_settings()).get_item("rgb", "b")
    assert set(item["assets"]) == {"analysis", "archive"}


def test_invalid_input_fails_without_retry_and_names_the_blob(settings, instance, real_rasters):
    _land(settings, real_rasters, "nontiff.jpg", "bad/nontiff.jpg")
    result = _materialize(
        instance, "bad/nontiff.jpg", ["raster_validation", "cog_analysis", "stac_item"]
    )
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert len(failures) == 1
    assert failures[0].step_failure_data.user_failure_data.description == (
        "bronze/bad/nontiff.jpg: not georeferenced: no CRS and no geotransform"
    )
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
