import dagster as dg
import pytest

from geo_platform.definitions import defs

pytestmark = pytest.mark.asset


def test_definitions_load_with_every_asset_check_sensor_and_job(settings):
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "raster_validation",
        "cog_visualization",
        "cog_analysis",
        "cog_archive",
        "stac_item",
        "collection_summary",
        "vector_table",
        "vector_item",
        "vector_tiles",
    }
    assert {k.to_user_string() for k in graph.asset_check_keys} == {
        "cog_visualization:valid_cog",
        "cog_analysis:valid_cog",
        "cog_analysis:lossless",
        "cog_archive:valid_cog",
        "cog_archive:lossless",
        "stac_item:item_valid",
        "vector_table:row_count",
        "vector_table:geometries_valid",
        "vector_table:srid",
        "vector_item:item_valid",
    }
    assert definitions.resolve_sensor_def("bronze_rasters").job_name == "raster_ingest"
    automation = definitions.resolve_sensor_def("default_automation_condition_sensor")
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    assert definitions.resolve_job_def("raster_ingest") is not None
    for key in ("raster_validation", "cog_analysis", "stac_item"):
        node = graph.get(dg.AssetKey(key))
        assert node.partitions_def.name == "rasters"
        assert node.description, f"{key} needs a description for the UI"
    assert graph.get(dg.AssetKey("collection_summary")).automation_condition is not None
    assert definitions.resolve_sensor_def("bronze_vectors").job_name == "vector_ingest"
    for key in ("vector_table", "vector_item", "vector_tiles"):
        node = graph.get(dg.AssetKey(key))
        assert node.partitions_def.name == "vector_sources"
        assert node.description, f"{key} needs a description for the UI"
    assert graph.get(dg.AssetKey("vector_tiles")).automation_condition is not None
    assert set(definitions.resolve_job_def("vector_ingest").asset_layer.executable_asset_keys) >= {
        dg.AssetKey("vector_table"),
        dg.AssetKey("vector_item"),
    }
    tiers = definitions.resolve_assets_def(dg.AssetKey("cog_analysis"))
    assert tiers.can_subset and len(tiers.keys) == 3
