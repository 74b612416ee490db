"""The raster assets through dg.materialize, with the embedded resources."""

import json
import shutil
from dataclasses import replace

import dagster as dg
import pytest
import rasterio

from geo_platform.backends import dagster_resources, stac_catalog
from geo_platform.defs.raster.assets import FAILED_RASTERS, raster_pipeline
from geo_platform.defs.raster.partitions import raster_partitions
from geo_platform.defs.stac.assets import collection_summary
from geo_platform.processing import raster as processing
from geo_platform.settings import get_platform_settings

from .tier_blobs import tier_file, tier_files

pytestmark = pytest.mark.asset
ASSETS = [raster_pipeline, collection_summary]
ALL = ["raster_validation", "cog_visualization", "cog_analysis", "cog_archive", "stac_item"]


def _land(settings, real_rasters, name, key):
    target = settings.blob_root / "bronze" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(real_rasters / name, target)


def _materialize(instance, keys, selection, run_config=None):
    """One run over ``keys`` (a range: they are registered in this order)."""
    keys = [keys] if isinstance(keys, str) else keys
    instance.add_dynamic_partitions("rasters", keys)
    tags = {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }
    return dg.materialize(
        ASSETS,
        selection=selection,
        tags=tags,
        instance=instance,
        resources=dagster_resources(),
        run_config=run_config,
        raise_on_error=False,
    )


def _materialized_partitions(result, asset):
    return {
        e.step_materialization_data.materialization.partition
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(asset)
    }


def test_a_tier_that_does_not_apply_is_not_recorded_as_materialized(
    settings, instance, real_rasters
):
    _land(settings, real_rasters, "image_float.tif", "dem/float.tif")
    result = _materialize(instance, "dem/float.tif", ALL)
    assert result.success
    assert _materialized_partitions(result, "cog_visualization") == set()
    assert _materialized_partitions(result, "cog_analysis") == {"dem/float.tif"}
    status = instance.get_status_by_partition(
        dg.AssetKey("cog_visualization"), ["dem/float.tif"], raster_partitions
    )
    assert status["dem/float.tif"] is None
    validation = result.asset_materializations_for_node("raster_pipeline")[0]
    assert "3-band uint8" in validation.metadata["skip_visualization"].value
    assert tier_files(settings.blob_root, "dem/float.tif", "visualization") == []
    item = stac_catalog(get_platform_settings()).get_item("dem", "float")
    assert set(item["assets"]) == {"analysis", "archive", "thumbnail"}


def test_run_config_output_tier_writes_only_what_it_names(settings, instance, real_rasters):
    _land(settings, real_rasters, "image_rgb.tif", "rgb/a.tif")
    result = _materialize(
        instance,
        "rgb/a.tif",
        ALL,
        {"ops": {"raster_pipeline": {"config": {"output_tier": "visualization"}}}},
    )
    assert result.success
    assert tier_file(settings.blob_root, "rgb/a.tif", "visualization").exists()
    assert tier_files(settings.blob_root, "rgb/a.tif", "archive") == []
    assert _materialized_partitions(result, "cog_archive") == set()
    checks = _checks_passed(result)
    assert checks == {("cog_visualization", "valid_cog"): True, ("stac_item", "item_valid"): True}


def test_stac_item_sees_tiers_written_by_earlier_runs(settings, instance, real_rasters):
    _land(settings, real_rasters, "image_rgb.tif", "rgb/b.tif")
    assert _materialize(instance, "rgb/b.tif", ["raster_validation", "cog_archive"]).success
    assert _materialize(
        instance, "rgb/b.tif", ["raster_validation", "cog_analysis", "stac_item"]
    ).success
    item = stac_catalog(get_platform_settings()).get_item("rgb", "b")
    assert set(item["assets"]) == {"analysis", "archive", "thumbnail"}


def test_one_bad_raster_fails_its_own_partition_and_the_batch_goes_on(
    settings, instance, real_rasters
):
    keys = ["mix/a.tif", "mix/bad.jpg", "mix/c.tif"]
    _land(settings, real_rasters, "image_rgb.tif", keys[0])
    _land(settings, real_rasters, "nontiff.jpg", keys[1])
    _land(settings, real_rasters, "image_float.tif", keys[2])
    result = _materialize(instance, keys, ALL)
    assert not result.success
    assert _materialized_partitions(result, "stac_item") == {"mix/a.tif", "mix/c.tif"}
    failure = next(e for e in result.all_events if e.is_step_failure)
    data = failure.step_failure_data.user_failure_data
    assert data.metadata[FAILED_RASTERS].value == {
        "mix/bad.jpg": "bronze/mix/bad.jpg: not georeferenced: no CRS and no geotransform"
    }
    assert data.description.startswith("1 of 3 rasters failed:\nbronze/mix/bad.jpg: ")
    # Bad input is never retried: running it again gives the same answer.
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)
    status = instance.get_status_by_partition(dg.AssetKey("stac_item"), keys, raster_partitions)
    assert status == {
        "mix/a.tif": dg.AssetPartitionStatus.MATERIALIZED,
        "mix/bad.jpg": dg.AssetPartitionStatus.FAILED,
        "mix/c.tif": dg.AssetPartitionStatus.MATERIALIZED,
    }
    assert {i["id"] for i in stac_catalog(get_platform_settings()).search(limit=None)} == {
        "a",
        "c",
    }
    # Fixed, it is retried alone and succeeds.
    _land(settings, real_rasters, "image_web.tif", "mix/bad.jpg")
    retried = _materialize(instance, "mix/bad.jpg", ALL)
    assert retried.success
    assert _materialized_partitions(retried, "stac_item") == {"mix/bad.jpg"}


def test_a_tier_that_fails_its_check_is_not_published(
    settings, instance, real_rasters, monkeypatch
):
    """valid_cog gates publication: the failing tier is not stored and no item is written,
    so the previous item stays."""
    _land(settings, real_rasters, "image_rgb.tif", "gate/a.tif")
    assert _materialize(instance, "gate/a.tif", ALL).success
    catalog = stac_catalog(get_platform_settings())
    before = catalog.get_item("gate", "a")
    analysis = tier_file(settings.blob_root, "gate/a.tif", "analysis")
    stored_before = analysis.read_bytes()

    def broken_validate(path, quiet=True):
        if ".analysis." in path:
            return False, ["The file is not a COG (simulated)"], []
        return True, [], []

    monkeypatch.setattr(processing, "cog_validate", broken_validate)
    # A changed source: without the gate its new tiers and item would replace the old.
    _land(settings, real_rasters, "image_web.tif", "gate/a.tif")
    result = _materialize(instance, "gate/a.tif", ALL)
    assert not result.success
    evaluations = _checks_passed(result)
    assert evaluations[("cog_analysis", "valid_cog")] is False
    assert _materialized_partitions(result, "cog_analysis") == set()
    assert _materialized_partitions(result, "stac_item") == set()
    assert tier_files(settings.blob_root, "gate/a.tif", "analysis") == [analysis]
    assert analysis.read_bytes() == stored_before
    assert catalog.get_item("gate", "a") == before


def test_collection_summary_reports_storage_per_tier(settings, instance, real_rasters):
    _land(settings, real_rasters, "image_rgb.tif", "sum/a.tif")
    _land(settings, real_rasters, "image_float.tif", "sum/b.tif")
    assert _materialize(instance, ["sum/a.tif", "sum/b.tif"], ALL).success
    result = dg.materialize(
        ASSETS, selection=["collection_summary"], instance=instance, resources=dagster_resources()
    )
    report = result.asset_materializations_for_node("collection_summary")[0].metadata["report"]
    published = json.loads((settings.blob_root / "gold/stac/sum/collection.json").read_text())
    summary = stac_catalog(get_platform_settings()).get_collection("sum")
    assert published["summaries"] == summary["summaries"] and published["id"] == "sum"
    tiers = report.value["sum"]["tiers"]
    assert report.value["sum"]["items"] == 2
    assert {name: figures["items"] for name, figures in tiers.items()} == {
        "analysis": 2,
        "archive": 2,
        "visualization": 1,
    }
    assert tiers["analysis"]["bytes"] == sum(
        tier_file(settings.blob_root, f"sum/{n}.tif", "analysis").stat().st_size for n in ("a", "b")
    )


def test_a_tier_that_loses_pixels_is_not_published_even_when_its_checks_are_not_selected(
    settings, instance, real_rasters, monkeypatch
):
    """lossless gates publication too, and the gates run whether the run selected the
    checks or not (a run of the assets alone must not publish an unchecked tier)."""
    _land(settings, real_rasters, "image_rgb.tif", "gate/b.tif")
    assert _materialize(instance, "gate/b.tif", ALL).success
    catalog = stac_catalog(get_platform_settings())
    before = catalog.get_item("gate", "b")
    archive_before = tier_files(settings.blob_root, "gate/b.tif", "archive")

    real_compare = processing.compare_pixels

    def lossy_archive(source, path):
        result = real_compare(source, path)
        if ".archive." in str(path):
            return replace(result, identical=False, problems=("pixel values differ (simulated)",))
        return result

    monkeypatch.setattr(processing, "compare_pixels", lossy_archive)
    _land(settings, real_rasters, "image_web.tif", "gate/b.tif")
    result = _materialize(instance, "gate/b.tif", ALL)
    assert not result.success
    evaluations = _checks_passed(result)
    assert evaluations[("cog_archive", "lossless")] is False
    assert _materialized_partitions(result, "cog_archive") == set()
    assert _materialized_partitions(result, "stac_item") == set()
    assert tier_files(settings.blob_root, "gate/b.tif", "archive") == archive_before
    assert catalog.get_item("gate", "b") == before

    unchecked = dg.AssetSelection.assets(*ALL).without_checks()
    result = _materialize(instance, "gate/b.tif", unchecked)
    assert not result.success
    assert result.get_asset_check_evaluations() == []
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "cog_archive failed lossless" in failure.step_failure_data.user_failure_data.description
    assert catalog.get_item("gate", "b") == before


def test_tier_metadata_and_thumbnail_read_as_a_gis_user_expects(settings, instance, tmp_path):
    from .test_cog import _class_raster

    source = _class_raster(tmp_path / "classes.tif")
    target = settings.blob_root / "bronze" / "landcover" / "classes.tif"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    result = _materialize(instance, "landcover/classes.tif", ALL)
    assert result.success
    analysis = next(
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey("cog_analysis")
    )
    meta = {name: value.value for name, value in analysis.metadata.items()}
    stored = tier_file(settings.blob_root, "landcover/classes.tif", "analysis")
    assert meta["size_bytes"] == stored.stat().st_size
    assert meta["size"].endswith("kB")
    share = stored.stat().st_size / source.stat().st_size * 100
    assert meta["size_vs_source"] == f"{share:.0f} % of the source"
    assert meta["crs"] == "EPSG:32632"
    assert meta["dimensions"] == "1536 x 1536 px, 1 band(s)"
    assert meta["data_type"] == "uint8" and meta["block_size"] == "512 x 512"
    assert meta["overview_levels"] == "1/2, 1/4"
    assert meta["overview_resampling"].startswith("mode (categorical")
    assert meta["thumbnail"].startswith("![thumbnail](data:image/jpeg;base64,")
    assert "compression_ratio" not in meta

    item = stac_catalog(get_platform_settings()).get_item("landcover", "classes")
    assert item["properties"]["geo_platform:overview_resampling"] == "mode"
    thumbnail = item["assets"]["thumbnail"]
    assert thumbnail["roles"] == ["thumbnail"] and thumbnail["type"] == "image/png"
    (png,) = (settings.blob_root / "silver" / "landcover").glob("classes.thumbnail.*.png")
    assert thumbnail["href"].endswith(png.name)
    assert thumbnail["file:size"] == png.stat().st_size
    with rasterio.open(png) as image:
        assert (image.width, image.height) == (256, 256)


def test_an_item_that_does_not_validate_is_not_written_and_the_previous_one_stays(
    settings, instance, real_rasters, monkeypatch
):
    _land(settings, real_rasters, "image_rgb.tif", "gate/c.tif")
    assert _materialize(instance, "gate/c.tif", ALL).success
    catalog = stac_catalog(get_platform_settings())
    before = catalog.get_item("gate", "c")
    (analysis,) = tier_files(settings.blob_root, "gate/c.tif", "analysis")

    monkeypatch.setattr(processing, "validate_item", lambda item: ["schema: (simulated)"])
    _land(settings, real_rasters, "image_web.tif", "gate/c.tif")
    result = _materialize(instance, "gate/c.tif", ALL)
    assert not result.success
    evaluations = {
        (c.asset_key.to_user_string(), c.check_name): (c.passed, c.partition)
        for c in result.get_asset_check_evaluations()
    }
    assert evaluations[("stac_item", "item_valid")] == (False, "gate/c.tif")
    assert _materialized_partitions(result, "stac_item") == set()
    assert catalog.get_item("gate", "c") == before
    # The item still points at files that exist.
    assert analysis.exists() and before["assets"]["analysis"]["href"].endswith(analysis.name)


def _checks_passed(result) -> dict[tuple[str, str], bool]:
    """Whether each check evaluated by the run passed, by (asset, check name)."""
    return {
        (c.asset_key.to_user_string(), c.check_name): c.passed
        for c in result.get_asset_check_evaluations()
    }


def test_an_item_the_catalog_refuses_fails_its_own_partition_and_its_tiers_stay_reported(
    settings, instance, real_rasters, monkeypatch
):
    from geo_platform.errors import InvalidInputError
    from geo_platform.resources.duckdb_catalog import DuckDBCatalog

    keys = ["refuse/a.tif", "refuse/b.tif", "refuse/c.tif"]
    for key, name in zip(keys, ["image_rgb.tif", "image_web.tif", "image_float.tif"], strict=True):
        _land(settings, real_rasters, name, key)
    upsert_items = DuckDBCatalog.upsert_items

    def refusing_b(self, items):
        if any(item["id"] == "b" for item in items):
            raise InvalidInputError("refuse/b", "(simulated) a property the catalog rejects")
        return upsert_items(self, items)

    monkeypatch.setattr(DuckDBCatalog, "upsert_items", refusing_b)
    result = _materialize(instance, keys, ALL)
    assert not result.success
    assert _materialized_partitions(result, "stac_item") == {"refuse/a.tif", "refuse/c.tif"}
    # Its tiers are stored: they are reported as such, with the item's failure on its own.
    assert _materialized_partitions(result, "cog_analysis") == set(keys)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_failure_data.user_failure_data.metadata[FAILED_RASTERS].value == {
        "refuse/b.tif": "bronze/refuse/b.tif: the catalog refused its item: "
        "(simulated) a property the catalog rejects"
    }
    catalog = stac_catalog(get_platform_settings())
    assert {i["id"] for i in catalog.search(collections=["refuse"], limit=None)} == {"a", "c"}
    # Each raster is reported as it is done, its item once written, and the item's check
    # after the item it checks.
    order = [
        ("ASSET_CHECK_EVALUATION", e.asset_check_evaluation_data.asset_key.to_user_string(),
         e.asset_check_evaluation_data.partition)
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        else (e.event_type_value, e.asset_key.to_user_string(), e.partition)
        for e in result.all_events
        if e.event_type_value in ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION")
    ]  # fmt: skip
    for key in ("refuse/a.tif", "refuse/c.tif"):
        item = order.index(("ASSET_MATERIALIZATION", "stac_item", key))
        assert order.index(("ASSET_MATERIALIZATION", "cog_analysis", key)) < item
        assert order.index(("ASSET_CHECK_EVALUATION", "stac_item", key)) > item
