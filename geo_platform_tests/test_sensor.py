import json
import shutil
import uuid

import dagster as dg
import pytest

from geo_platform.backends import dagster_resources, stac_catalog
from geo_platform.defs.bronze import latest_observed
from geo_platform.defs.raster import sensors
from geo_platform.defs.raster.assets import BRONZE_RASTER
from geo_platform.defs.raster.jobs import raster_cleanup
from geo_platform.defs.raster.sensors import bronze_rasters
from geo_platform.resources.blob_store import LocalBlobStore

from .tier_blobs import tier_file

pytestmark = pytest.mark.asset
ALL_TIERS = {"raster_validation", "cog_visualization", "cog_analysis", "cog_archive", "stac_item"}


@pytest.fixture
def bronze(settings):
    folder = settings.blob_root / "bronze"
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def settled(monkeypatch):
    """Blobs count as settled as soon as they land (the settle time has its own test)."""
    monkeypatch.setenv("GEO_PLATFORM_RUN_SENSOR_SETTLE_SECONDS", "0")


def _tick(instance, store, cursor=None):
    """One evaluation, with what the daemon does with its result: partitions registered,
    observations stored."""
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"blob_store": store}
    )
    result = bronze_rasters(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    return result


def _ranged_keys(instance, result):
    """The partition keys each ingest run request covers."""
    ordered = instance.get_dynamic_partitions("rasters")
    keys = []
    for request in result.run_requests:
        if request.job_name == raster_cleanup.name:
            continue
        start = ordered.index(request.tags["dagster/asset_partition_range_start"])
        end = ordered.index(request.tags["dagster/asset_partition_range_end"])
        keys.append(ordered[start : end + 1])
    return keys


def _land(real_rasters, bronze, name, key):
    target = bronze / key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(real_rasters / name, target)
    return target


def test_new_rasters_become_partitions_and_ranged_runs_once(
    settings, instance, bronze, real_rasters, settled
):
    store = LocalBlobStore(root=str(settings.blob_root))
    _land(real_rasters, bronze, "image_rgb.tif", "drone/a.tif")
    _land(real_rasters, bronze, "image_rgb.tif", "drone/b.tif")
    _land(real_rasters, bronze, "image_float.tif", "dem/c.tif")
    (bronze / "drone" / "notes.txt").write_text("not a raster")

    result = _tick(instance, store)
    assert instance.get_dynamic_partitions("rasters") == ["dem/c.tif", "drone/a.tif", "drone/b.tif"]
    # One run per collection here (they are contiguous and under the batch size).
    assert _ranged_keys(instance, result) == [["dem/c.tif"], ["drone/a.tif", "drone/b.tif"]]
    assert len({r.run_key for r in result.run_requests}) == 2
    assert {k.to_user_string() for k in result.run_requests[0].asset_selection} == ALL_TIERS
    assert latest_observed(instance, BRONZE_RASTER, ["drone/a.tif"]) == {
        "drone/a.tif": store.info("bronze", "drone/a.tif").etag
    }

    again = _tick(instance, store, result.cursor)
    assert again.run_requests == []

    changed = _land(real_rasters, bronze, "image_nodata.tif", "drone/b.tif")
    changed.touch()
    after_change = _tick(instance, store, again.cursor)
    assert _ranged_keys(instance, after_change) == [["drone/b.tif"]]


def test_ticks_are_bounded_the_cursor_does_not_grow_and_nothing_is_missed(
    settings, instance, bronze, real_rasters, settled, monkeypatch
):
    monkeypatch.setattr(sensors, "PAGE_SIZE", 3)
    monkeypatch.setattr(sensors, "MAX_CHANGES_PER_TICK", 2)
    store = LocalBlobStore(root=str(settings.blob_root))
    for i in range(7):
        _land(real_rasters, bronze, "image_web.tif", f"web/{i}.tif")
    seen, cursor, sizes = [], None, []
    for _ in range(8):
        result = _tick(instance, store, cursor)
        handed = [key for keys in _ranged_keys(instance, result) for key in keys]
        assert len(handed) <= 2
        seen += handed
        cursor = result.cursor
        sizes.append(len(cursor))
    assert sorted(seen) == [f"web/{i}.tif" for i in range(7)]
    assert max(sizes) < 200


def test_a_fresh_blob_waits_until_it_has_settled(settings, instance, bronze, real_rasters):
    """An upload in progress elsewhere (an ingest that has not recorded it yet) is left
    alone for the settle time."""
    store = LocalBlobStore(root=str(settings.blob_root))
    _land(real_rasters, bronze, "image_rgb.tif", "fresh/a.tif")
    result = _tick(instance, store)
    assert result.run_requests == []
    assert instance.get_dynamic_partitions("rasters") == []


def test_names_that_cannot_be_partition_keys_are_logged_once(
    settings, instance, bronze, real_rasters, settled, capfd
):
    store = LocalBlobStore(root=str(settings.blob_root))
    _land(real_rasters, bronze, "image_rgb.tif", "odd/a|b.tif")
    _land(real_rasters, bronze, "image_rgb.tif", "odd/ok.tif")
    result = _tick(instance, store)
    assert _ranged_keys(instance, result) == [["odd/ok.tif"]]
    logged = capfd.readouterr().err
    assert "bronze/odd/a|b.tif: skipped, cannot be a partition key: contains '|'" in logged
    _tick(instance, store, result.cursor)
    assert "a|b.tif" not in capfd.readouterr().err, "a rejected name is reported once"


def test_collection_output_tier_narrows_the_run(settings, instance, bronze, real_rasters, settled):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.collections_path.write_text("archive_only:\n  output_tier: archive\n")
    store = LocalBlobStore(root=str(settings.blob_root))
    _land(real_rasters, bronze, "image_rgb.tif", "archive_only/a.tif")
    result = _tick(instance, store)
    selection = {k.to_user_string() for k in result.run_requests[0].asset_selection}
    assert selection == {"raster_validation", "cog_archive", "stac_item"}


def test_versions_the_cli_ingested_or_failed_are_not_run_again(
    settings, instance, copy_real, real_rasters, settled
):
    from geo_platform.ingest import ingest

    folder = copy_real("image_rgb.tif", "nontiff.jpg")
    outcomes = ingest([folder], collection="cli", output_tier=None, settings=settings)
    assert [o.ok for o in outcomes] == [True, False]
    store = LocalBlobStore(root=str(settings.blob_root))
    result = _tick(instance, store)
    assert result.run_requests == []
    replaced = settings.blob_root / "bronze" / "cli" / "image_rgb.tif"
    shutil.copy(real_rasters / "image_web.tif", replaced)
    again = _tick(instance, store, result.cursor)
    assert _ranged_keys(instance, again) == [["cli/image_rgb.tif"]]


def test_a_deleted_blob_loses_its_partition_tiers_and_item(settings, instance, copy_real, settled):
    from geo_platform.ingest import ingest

    folder = copy_real("image_rgb.tif", "image_float.tif")
    assert all(
        o.ok for o in ingest([folder], collection="del", output_tier=None, settings=settings)
    )
    store = LocalBlobStore(root=str(settings.blob_root))
    tiers = [
        tier_file(settings.blob_root, "del/image_rgb.tif", tier)
        for tier in ("analysis", "visualization", "archive")
    ]
    assert all(path.exists() for path in tiers)
    store.delete("bronze", "del/image_rgb.tif")

    result = _tick(instance, store)
    (cleanup,) = result.run_requests
    assert cleanup.job_name == "raster_cleanup"
    assert cleanup.run_config["ops"]["remove_rasters"]["config"]["keys"] == ["del/image_rgb.tif"]
    run = raster_cleanup.execute_in_process(
        run_config=cleanup.run_config, instance=instance, resources=dagster_resources()
    )
    assert run.success
    assert not any(path.exists() for path in tiers)
    catalog = stac_catalog(settings)
    assert catalog.get_item("del", "image_rgb") is None
    assert catalog.get_item("del", "image_float") is not None
    assert instance.get_dynamic_partitions("rasters") == ["del/image_float.tif"]
    assert _tick(instance, store, result.cursor).run_requests == []


@pytest.mark.integration
def test_a_tick_that_fails_while_storage_is_down_misses_nothing(instance, real_rasters, settled):
    from geo_platform.errors import TransientError
    from geo_platform.resources.azure_blob_store import AzureBlobStore
    from geo_platform.settings import AZURITE_CONNECTION_STRING

    from .conftest import delete_azurite_containers

    prefix = f"s{uuid.uuid4().hex[:8]}-"
    up = AzureBlobStore(connection_string=AZURITE_CONNECTION_STRING, container_prefix=prefix)
    down = AzureBlobStore(
        connection_string=AZURITE_CONNECTION_STRING.replace("127.0.0.1:10000", "127.0.0.1:1"),
        container_prefix=prefix,
    )
    try:
        up.upload_file(real_rasters / "image_rgb.tif", "bronze", "az/first.tif")
        first = _tick(instance, up)
        assert _ranged_keys(instance, first) == [["az/first.tif"]]

        up.upload_file(real_rasters / "image_web.tif", "bronze", "az/second.tif")
        with pytest.raises(TransientError, match="unreachable"):
            _tick(instance, down, first.cursor)
        # Dagster keeps the cursor of the last successful tick: the next one resumes there.
        resumed = _tick(instance, up, first.cursor)
        assert _ranged_keys(instance, resumed) == [["az/second.tif"]]
        assert json.loads(resumed.cursor)["token"] is None
    finally:
        delete_azurite_containers(prefix)


def test_vectors_and_rasters_in_one_folder_go_to_their_own_sensor(
    settings, instance, bronze, real_rasters, settled, monkeypatch
):
    from geo_platform.defs.vector import sensors as vector_sensors

    from . import vector_inputs

    monkeypatch.setenv("GEO_PLATFORM_RUN_SENSOR_SETTLE_SECONDS", "0")
    store = LocalBlobStore(root=str(settings.blob_root))
    _land(real_rasters, bronze, "image_rgb.tif", "mix/a.tif")
    vector_inputs.mixed_types(bronze / "mix" / "b.geojson")
    vector_inputs.shapefile_zip(bronze / "mix" / "c.zip")
    (bronze / "mix" / "notes.txt").write_text("neither")

    assert _ranged_keys(instance, _tick(instance, store)) == [["mix/a.tif"]]

    def vector_tick(cursor=None):
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"blob_store": store}
        )
        result = vector_sensors.bronze_vectors(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        for event in result.asset_events:
            instance.report_runless_asset_event(event)
        return result

    vectors = vector_tick()
    assert [r.partition_key for r in vectors.run_requests] == ["mix/b.geojson", "mix/c.zip"]
    assert instance.get_dynamic_partitions("vector_sources") == ["mix/b.geojson", "mix/c.zip"]
    # Observed: the next pass over the container asks for nothing more...
    assert vector_tick(vectors.cursor).run_requests == []
    # ...until a file changes.
    (bronze / "mix" / "b.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    changed = vector_tick(vectors.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["mix/b.geojson"]
