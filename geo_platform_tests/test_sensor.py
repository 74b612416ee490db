import shutil
import uuid

import dagster as dg
import pytest

from geo_platform.defs.raster import sensors
from geo_platform.defs.raster.sensors import bronze_rasters
from geo_platform.lib.blob_scan import ScanCursor
from geo_platform.resources.blob_store import LocalBlobStore

pytestmark = pytest.mark.asset


@pytest.fixture
def bronze(settings):
    folder = settings.blob_root / "bronze"
    folder.mkdir(parents=True)
    return folder


def _tick(instance, store, cursor=None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"blob_store": store}
    )
    return bronze_rasters(context), context


def _land(real_rasters, bronze, name, key):
    target = bronze / key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(real_rasters / name, target)
    return target


def test_new_rasters_become_partitions_and_runs_once(settings, instance, bronze, real_rasters):
    store = LocalBlobStore(root=str(settings.blob_root))
    _land(real_rasters, bronze, "image_rgb.tif", "drone/a.tif")
    _land(real_rasters, bronze, "image_float.tif", "dem/b.tif")
    (bronze / "drone" / "notes.txt").write_text("not a raster")

    result, _ = _tick(instance, store)
    assert sorted(r.partition_key for r in result.run_requests) == ["dem/b.tif", "drone/a.tif"]
    assert result.dynamic_partitions_requests[0].partition_keys == ["dem/b.tif", "drone/a.tif"]
    assert len({r.run_key for r in result.run_requests}) == 2
    selection = {k.to_user_string() for k in result.run_requests[0].asset_selection}
    assert selection == {
        "raster_validation",
        "cog_visualization",
        "cog_analysis",
        "cog_archive",
        "stac_item",
    }

    again, _ = _tick(instance, store, result.cursor)
    assert again.run_requests == []

    changed = _land(real_rasters, bronze, "image_nodata.tif", "dem/b.tif")
    changed.touch()
    after_change, _ = _tick(instance, store, again.cursor)
    assert [r.partition_key for r in after_change.run_requests] == ["dem/b.tif"]
    cursor = ScanCursor.from_json(after_change.cursor)
    assert set(cursor.seen) == {"dem/b.tif", "drone/a.tif"}, "cursor keeps earlier state"


def test_ticks_are_bounded_and_resume(settings, instance, bronze, real_rasters, monkeypatch):
    monkeypatch.setattr(sensors, "MAX_RUNS_PER_TICK", 2)
    store = LocalBlobStore(root=str(settings.blob_root))
    for i in range(5):
        _land(real_rasters, bronze, "image_web.tif", f"web/{i}.tif")
    seen, cursor = [], None
    for _ in range(3):
        result, _ = _tick(instance, store, cursor)
        assert len(result.run_requests) <= 2
        seen += [r.partition_key for r in result.run_requests]
        cursor = result.cursor
    assert sorted(seen) == [f"web/{i}.tif" for i in range(5)]


def test_names_that_cannot_be_partition_keys_are_logged_not_fatal(
    settings, instance, bronze, real_rasters, capfd
):
    store = LocalBlobStore(root=str(settings.blob_root))
    _land(real_rasters, bronze, "image_rgb.tif", "odd/a|b.tif")
    _land(real_rasters, bronze, "image_rgb.tif", "odd/ok.tif")
    result, _ = _tick(instance, store)
    assert [r.partition_key for r in result.run_requests] == ["odd/ok.tif"]
    logged = capfd.readouterr().err
    assert "bronze/odd/a|b.tif: skipped, cannot be a partition key: contains '|'" in logged
    _tick(instance, store, result.cursor)
    assert "a|b.tif" not in capfd.readouterr().err, "a rejected name is reported once"


def test_collection_output_tier_narrows_the_run(settings, instance, bronze, real_rasters):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.collections_path.write_text("archive_only:\n  output_tier: archive\n")
    store = LocalBlobStore(root=str(settings.blob_root))
    _land(real_rasters, bronze, "image_rgb.tif", "archive_only/a.tif")
    result, _ = _tick(instance, store)
    selection = {k.to_user_string() for k in result.run_requests[0].asset_selection}
    assert selection == {"raster_validation", "cog_archive", "stac_item"}


def test_blobs_already_ingested_by_the_cli_are_not_run_again(
    settings, instance, copy_real, real_rasters
):
    from geo_platform.ingest import ingest

    ingest([copy_real("image_rgb.tif")], collection="cli", output_tier=None, settings=settings)
    store = LocalBlobStore(root=str(settings.blob_root))
    result, _ = _tick(instance, store)
    assert result.run_requests == []
    assert "cli/image_rgb.tif" in ScanCursor.from_json(result.cursor).seen
    replaced = settings.blob_root / "bronze" / "cli" / "image_rgb.tif"
    shutil.copy(real_rasters / "image_web.tif", replaced)
    again, _ = _tick(instance, store, result.cursor)
    assert [r.partition_key for r in again.run_requests] == ["cli/image_rgb.tif"]


@pytest.mark.integration
def test_a_tick_that_fails_while_storage_is_down_misses_nothing(instance, real_rasters, tmp_path):
    from geo_platform.errors import TransientError
    from geo_platform.resources.azure_blob_store import AzureBlobStore
    from geo_platform.settings import AZURITE_CONNECTION_STRING

    prefix = f"s{uuid.uuid4().hex[:8]}-"
    up = AzureBlobStore(connection_string=AZURITE_CONNECTION_STRING, container_prefix=prefix)
    down = AzureBlobStore(
        connection_string=AZURITE_CONNECTION_STRING.replace("127.0.0.1:10000", "127.0.0.1:1"),
        container_prefix=prefix,
    )
    up.upload_file(real_rasters / "image_rgb.tif", "bronze", "az/first.tif")
    first, _ = _tick(instance, up)
    assert [r.partition_key for r in first.run_requests] == ["az/first.tif"]

    up.upload_file(real_rasters / "image_web.tif", "bronze", "az/second.tif")
    with pytest.raises(TransientError, match="unreachable"):
        _tick(instance, down, first.cursor)
    # Dagster keeps the cursor of the last successful tick: the next one resumes there.
    resumed, _ = _tick(instance, up, first.cursor)
    assert [r.partition_key for r in resumed.run_requests] == ["az/second.tif"]


def test_vectors_and_rasters_in_one_folder_go_to_their_own_sensor(
    settings, instance, bronze, real_rasters
):
    from geo_platform.defs.vector.sensors import bronze_vectors

    from . import vector_inputs

    store = LocalBlobStore(root=str(settings.blob_root))
    _land(real_rasters, bronze, "image_rgb.tif", "mix/a.tif")
    (bronze / "mix").mkdir(exist_ok=True)
    vector_inputs.mixed_types(bronze / "mix" / "b.geojson")
    vector_inputs.shapefile_zip(bronze / "mix" / "c.zip")
    (bronze / "mix" / "notes.txt").write_text("neither")

    rasters, _ = _tick(instance, store)
    assert [r.partition_key for r in rasters.run_requests] == ["mix/a.tif"]
    context = dg.build_sensor_context(instance=instance, resources={"blob_store": store})
    vectors = bronze_vectors(context)
    assert sorted(r.partition_key for r in vectors.run_requests) == ["mix/b.geojson", "mix/c.zip"]
    assert vectors.dynamic_partitions_requests[0].partitions_def_name == "vector_sources"
    context = dg.build_sensor_context(
        instance=instance, cursor=vectors.cursor, resources={"blob_store": store}
    )
    assert bronze_vectors(context).run_requests == []
