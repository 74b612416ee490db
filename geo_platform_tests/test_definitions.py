import dagster as dg
import pytest

from geo_platform.definitions import defs

pytestmark = pytest.mark.asset


def test_definitions_load_with_every_asset_check_sensor_and_job(settings):
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "bronze_raster",
        "bronze_vector",
        "raster_validation",
        "cog_visualization",
        "cog_analysis",
        "cog_archive",
        "stac_item",
        "collection_summary",
        "vector_table",
        "vector_item",
        "vector_tiles",
        "h3_grid",
        "h3_land_grid",
        "h3_raster_summary",
        "h3_vector_summary",
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
        "h3_grid:cell_count",
        "h3_grid:pentagons",
        "h3_grid:area_sum",
        "h3_grid:geometries_valid",
        "h3_land_grid:land_cells",
        "h3_land_grid:geometries_valid",
    }
    h3_grid = graph.get(dg.AssetKey("h3_grid"))
    assert h3_grid.partitions_def.get_partition_keys() == ["0", "1", "2", "3", "4"]
    for key in ("h3_raster_summary", "h3_vector_summary"):
        assert graph.get(dg.AssetKey(key)).automation_condition is not None
    sensor = definitions.resolve_sensor_def("bronze_rasters")
    assert {job.name for job in sensor.jobs} == {"raster_ingest", "raster_cleanup"}
    automation = definitions.resolve_sensor_def("default_automation_condition_sensor")
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    assert definitions.resolve_job_def("raster_ingest") is not None
    assert definitions.resolve_job_def("raster_cleanup") is not None
    nightly = definitions.resolve_schedule_def("nightly_reconcile")
    assert nightly.default_status == dg.DefaultScheduleStatus.RUNNING
    assert nightly.cron_schedule == "0 3 * * *"
    # Staleness is Dagster's own: the blob's ETag is the source's data version, and the
    # raster assets carry a code version.
    assert graph.get(dg.AssetKey("raster_validation")).parent_keys == {dg.AssetKey("bronze_raster")}
    assert graph.get(dg.AssetKey("cog_analysis")).code_version
    for key in ("raster_validation", "cog_analysis", "stac_item"):
        node = graph.get(dg.AssetKey(key))
        assert node.partitions_def.name == "rasters"
        assert node.description, f"{key} needs a description for the UI"
    assert graph.get(dg.AssetKey("collection_summary")).automation_condition is not None
    # One subsettable step for the whole per-raster chain, over ranges of partitions.
    pipeline = definitions.resolve_assets_def(dg.AssetKey("cog_analysis"))
    assert pipeline.can_subset and len(pipeline.keys) == 5
    # Backfills run as many rasters a run as ingest and the sensor do.
    from geo_platform.settings import get_run_settings

    assert pipeline.backfill_policy == dg.BackfillPolicy.multi_run(get_run_settings().batch_size)
    assert graph.get(dg.AssetKey("stac_item")).parent_keys == {
        dg.AssetKey("cog_visualization"),
        dg.AssetKey("cog_analysis"),
        dg.AssetKey("cog_archive"),
    }
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
    assert graph.get(dg.AssetKey("vector_table")).parent_keys == {dg.AssetKey("bronze_vector")}


def test_dev_workspace_names_the_code_location_as_the_project_does(tmp_path):
    """`dagster dev` warns at every load when the workspace's location name differs
    from pyproject's [tool.dg.project] code_location_name."""
    import tomllib
    from pathlib import Path

    import yaml

    from geo_platform.instance import ensure_workspace

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    expected = pyproject["tool"]["dg"]["project"]["code_location_name"]
    workspace = yaml.safe_load(ensure_workspace(tmp_path).read_text())
    (location,) = workspace["load_from"]
    assert location["python_module"] == {
        "module_name": "geo_platform.definitions",
        "location_name": expected,
    }


def test_h3_grid_partitions_follow_the_max_resolution(settings, monkeypatch):
    """From resolution 5 on, one partition per resolution-0 cell (122 per resolution)."""
    monkeypatch.setenv("GEO_PLATFORM_H3_MAX_RESOLUTION", "6")
    keys = defs().resolve_asset_graph().get(dg.AssetKey("h3_grid")).partitions_def
    keys = keys.get_partition_keys()
    assert len(keys) == 5 + 2 * 122
    assert keys[5] == "5/8001fffffffffff" and keys[-1].startswith("6/")
