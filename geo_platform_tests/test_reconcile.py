"""Reconciliation of bronze with the platform: the plan, the command, the nightly
schedule, and the backfill of a collection."""

import datetime as dt
import shutil

import dagster as dg
import pytest
from click.testing import CliRunner

from geo_platform.backends import blob_store, stac_catalog
from geo_platform.cli import main
from geo_platform.defs.raster.schedules import nightly_reconcile
from geo_platform.ingest import ingest
from geo_platform.lib.blob_scan import ListedBlob
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.reconcile import RasterState, plan_reconcile

from .tier_blobs import tier_blobs, tier_files

NOW = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
OLD = NOW - dt.timedelta(hours=2)


@pytest.mark.unit
def test_the_plan_trusts_results_not_observations():
    blobs = [
        ListedBlob("c/done.tif", "e1", OLD),
        ListedBlob("c/changed.tif", "e2", OLD),
        ListedBlob("c/never_run.tif", "e1", OLD),
        ListedBlob("c/item_lost.tif", "e1", OLD),
        ListedBlob("c/invalid.tif", "e1", OLD),
        ListedBlob("c/fresh.tif", "e1", NOW - dt.timedelta(seconds=5)),
        ListedBlob("c/notes.txt", "e1", OLD),
        ListedBlob("other/x.tif", "e1", OLD),
    ]
    state = RasterState(
        materialized={"c/done.tif": "e1", "c/changed.tif": "e1", "c/item_lost.tif": "e1"},
        failed={"c/invalid.tif": "e1"},
    )
    registered = ["c/done.tif", "c/changed.tif", "c/gone.tif", "other/x.tif"]
    plan = plan_reconcile(
        blobs,
        registered,
        state,
        lambda collection: {"done", "changed"} if collection == "c" else set(),
        now=NOW,
        settle=dt.timedelta(seconds=60),
        collection="c",
    )
    assert plan.reasons == {
        "c/changed.tif": "changed",
        "c/never_run.tif": "new",
        "c/item_lost.tif": "item missing",
    }
    assert [key for key, _ in plan.to_run] == list(plan.reasons)
    assert plan.to_remove == ["c/gone.tif"]
    assert (plan.unchanged, plan.failed_before, plan.unsettled) == (1, 1, 1)


@pytest.fixture
def settled(monkeypatch):
    monkeypatch.setenv("GEO_PLATFORM_RUN_SENSOR_SETTLE_SECONDS", "0")
    monkeypatch.setenv("GEO_PLATFORM_RUN_SENSOR_SETTLE_SECONDS", "0")


@pytest.mark.asset
def test_reconcile_runs_what_changed_removes_what_left_and_leaves_the_rest(
    settings, instance, copy_real, real_rasters, settled
):
    folder = copy_real("image_rgb.tif", "image_float.tif", "image_web.tif")
    assert all(
        o.ok for o in ingest([folder], collection="rec", output_tier="analysis", settings=settings)
    )
    bronze = settings.blob_root / "bronze" / "rec"
    shutil.copy(real_rasters / "image_nodata.tif", bronze / "image_float.tif")  # changed
    (bronze / "image_web.tif").unlink()  # deleted
    shutil.copy(real_rasters / "image_colormap.tif", bronze / "dropped.tif")  # landed by hand
    catalog = stac_catalog(settings)

    runner = CliRunner()
    dry = runner.invoke(main, ["reconcile", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would run  rec/dropped.tif (new)" in dry.output
    assert "would run  rec/image_float.tif (changed)" in dry.output
    assert "would remove  rec/image_web.tif" in dry.output
    assert catalog.get_item("rec", "image_web") is not None

    done = runner.invoke(main, ["reconcile"])
    assert done.exit_code == 0, done.output
    assert "2 ok, 0 failed, 1 removed, 1 unchanged" in done.output
    assert catalog.get_item("rec", "image_web") is None
    assert tier_files(settings.blob_root, "rec/image_web.tif", "analysis") == []
    assert catalog.get_item("rec", "dropped") is not None
    changed_item = catalog.get_item("rec", "image_float")
    expected = "1220" + sha256_file(real_rasters / "image_nodata.tif")
    assert changed_item["properties"]["geo_platform:source_checksum"] == expected
    assert sorted(instance.get_dynamic_partitions("rasters")) == [
        "rec/dropped.tif",
        "rec/image_float.tif",
        "rec/image_rgb.tif",
    ]
    again = runner.invoke(main, ["reconcile"])
    assert "0 ok, 0 failed, 0 removed, 3 unchanged" in again.output


@pytest.mark.asset
def test_the_nightly_schedule_requests_what_was_never_finished(
    settings, instance, copy_real, real_rasters, settled
):
    folder = copy_real("image_rgb.tif")
    assert all(
        o.ok for o in ingest([folder], collection="night", output_tier=None, settings=settings)
    )
    bronze = settings.blob_root / "bronze" / "night"
    shutil.copy(real_rasters / "image_web.tif", bronze / "landed.tif")
    store = blob_store(settings)
    context = dg.build_schedule_context(instance=instance)
    requests = nightly_reconcile(context, blob_store=store, stac_catalog=stac_catalog(settings))
    assert [r.tags["dagster/asset_partition_range_start"] for r in requests] == ["night/landed.tif"]
    assert "night/landed.tif" in instance.get_dynamic_partitions("rasters")
    # Observed: the sensor leaves the version to the requested run.
    from geo_platform.defs.bronze import latest_observed
    from geo_platform.defs.raster.assets import BRONZE_RASTER

    assert latest_observed(instance, BRONZE_RASTER, ["night/landed.tif"]) == {
        "night/landed.tif": store.info("bronze", "night/landed.tif").etag
    }


@pytest.mark.asset
def test_backfill_rebuilds_a_collection_after_its_output_tier_changed(settings, copy_real):
    folder = copy_real("image_rgb.tif", "image_web.tif")
    assert all(o.ok for o in ingest([folder], collection="bf", output_tier=None, settings=settings))
    catalog = stac_catalog(settings)
    assert set(catalog.get_item("bf", "image_rgb")["assets"]) == {
        "visualization",
        "analysis",
        "archive",
        "thumbnail",
    }
    settings.collections_path.write_text("bf:\n  output_tier: analysis\n")
    result = CliRunner().invoke(main, ["backfill", "--collection", "bf", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "2 ok, 0 failed" in result.output
    for name in ("image_rgb", "image_web"):
        # Tiers no longer requested leave the item, and their files go with them.
        assert set(catalog.get_item("bf", name)["assets"]) == {"analysis", "thumbnail"}
        for tier in ("visualization", "archive"):
            assert tier_blobs(blob_store(settings), f"bf/{name}.tif", tier) == []
