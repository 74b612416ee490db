"""Batches of partitions: ranges Dagster can run, and scratch space reclaimed."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geo_platform.ingest import ingest
from geo_platform.lib.partition_keys import contiguous_batches
from geo_platform.processing.scratch import run_scratch


@pytest.mark.unit
def test_batches_never_straddle_a_key_that_is_not_wanted():
    ordered = ["a", "b", "x", "c", "d", "e", "y", "f"]
    wanted = {"a", "b", "c", "d", "e", "f"}
    assert contiguous_batches(ordered, wanted, 2) == [["a", "b"], ["c", "d"], ["e"], ["f"]]
    assert contiguous_batches(ordered, wanted, 10) == [["a", "b"], ["c", "d", "e"], ["f"]]
    assert contiguous_batches(ordered, set(), 3) == []


@pytest.mark.unit
def test_scratch_of_dead_runs_is_reclaimed_and_live_runs_keep_theirs(tmp_path: Path):
    for run in ("dead", "alive"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "cog.tif").write_bytes(b"x" * 10)
    folder = run_scratch(tmp_path, "mine", lambda run_id: run_id == "alive")
    assert folder == tmp_path / "mine" and folder.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alive", "mine"]


def _small_rasters(folder: Path, count: int) -> Path:
    folder.mkdir()
    for i in range(count):
        profile = {
            "driver": "GTiff",
            "width": 64,
            "height": 64,
            "count": 1,
            "dtype": "uint16",
            "crs": "EPSG:32633",
            "transform": from_origin(500_000 + i * 640, 5_000_000, 10, 10),
        }
        with rasterio.open(folder / f"r{i}.tif", "w", **profile) as dst:
            dst.write(np.full((64, 64), i, dtype="uint16"), 1)
    return folder


@pytest.mark.asset
def test_a_folder_is_ingested_in_runs_of_batch_size_files(settings, instance, tmp_path):
    folder = _small_rasters(tmp_path / "many", 7)
    outcomes = ingest(
        [folder], collection="many", output_tier="analysis", settings=settings, batch_size=3
    )
    assert [o.ok for o in outcomes] == [True] * 7
    runs = instance.get_runs()
    assert len(runs) == 3
    ranges = sorted(
        (r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
        for r in runs
    )
    assert ranges == [
        ("many/r0.tif", "many/r2.tif"),
        ("many/r3.tif", "many/r5.tif"),
        ("many/r6.tif", "many/r6.tif"),
    ]
    # Scratch space of finished runs does not stay behind.
    assert not any(settings.scratch_path.glob("*/*"))


@pytest.mark.asset
def test_rasters_whose_worker_process_dies_are_run_again_alone(tmp_path: Path):
    """Worker processes killed midway (GDAL crashing, the OOM killer) lose no raster:
    those they held are run again, each in a process of its own."""
    import os
    import signal

    from geo_platform.lib.raster.tiers import Tier
    from geo_platform.processing.raster import RasterContext, RasterPlan, _RasterWorkers
    from geo_platform.resources.blob_store import BRONZE, LocalBlobStore
    from geo_platform.settings import LimitSettings, PriceSettings

    store = LocalBlobStore(root=str(tmp_path / "blobs"))
    keys = []
    for path in sorted(_small_rasters(tmp_path / "src", 6).glob("*.tif")):
        store.upload_file(path, BRONZE, f"crash/{path.name}")
        keys.append(f"crash/{path.name}")
    plan = RasterPlan(tiers=(Tier.ANALYSIS,), item=True, checks=frozenset())
    ctx = RasterContext(
        blob_store=store, limits=LimitSettings(), prices=PriceSettings(),
        scratch=tmp_path / "scratch", threads=1,
    )  # fmt: skip
    outcomes = []
    with _RasterWorkers(plan, ctx, workers=2) as workers:
        run_alone = workers._alone
        alone: list[str] = []
        workers._alone = lambda key: alone.append(key) or run_alone(key)  # type: ignore[method-assign]
        for outcome in workers.outcomes(keys, in_flight=6):
            if not outcomes:  # the rest are in flight: kill the processes holding them
                for pid in list(workers.pool._processes):  # type: ignore[union-attr]
                    os.kill(pid, signal.SIGKILL)
            outcomes.append(outcome)
    assert sorted(o.key for o in outcomes) == keys
    assert 1 <= len(alone) <= 5  # the rasters in flight when their processes died
    assert [o.error for o in outcomes] == [None] * 6
    assert all(o.item is not None for o in outcomes)


@pytest.mark.unit
def test_a_batch_counts_each_rasters_stored_outputs_as_each_raster_would(tmp_path, monkeypatch):
    from geo_platform.errors import TransientError
    from geo_platform.lib.raster.tiers import Tier, thumbnail_blob_key, tier_blob_key
    from geo_platform.lib.raster.tiling import Tile, tile_file_name, tiles_prefix
    from geo_platform.processing import raster
    from geo_platform.resources.blob_store import LocalBlobStore

    store = LocalBlobStore(root=str(tmp_path / "blobs"))
    one = tmp_path / "one"
    one.write_bytes(b"x")
    sha = "0123456789abcdef" * 4
    tile = Tile(row=0, col=1, row_off=0, col_off=512, height=512, width=512)
    r10_tile = tiles_prefix("a/r10.tif") + tile_file_name(tile, Tier.ARCHIVE, sha)
    stored = {
        # r1's stem is the start of r10's and of r1b's: each output is counted once, its own.
        "a/r1.tif": [("silver", tier_blob_key(Tier.ANALYSIS, "a/r1.tif", sha)),
                     ("silver", thumbnail_blob_key("a/r1.tif", sha)),
                     ("archive", tier_blob_key(Tier.ARCHIVE, "a/r1.tif", sha))],
        "a/r10.tif": [("silver", tier_blob_key(Tier.VISUALIZATION, "a/r10.tif", sha)),
                      ("archive", r10_tile)],
        "a/r1b.tif": [],
        "a/r2.png": [("silver", tier_blob_key(Tier.ANALYSIS, "a/r2.png", sha))],
    }  # fmt: skip
    for outputs in stored.values():
        for container, key in outputs:
            store.upload_file(one, container, key)
    store.upload_file(one, "silver", "a/r1.analysis.not-a-version.tif")  # nobody's output
    store.upload_file(one, "silver", "a/r1c.analysis." + sha[:12] + ".tif")  # not in the batch
    keys = sorted(stored)

    assert raster.count_stored_outputs(store, keys) == {key: len(o) for key, o in stored.items()}
    assert {key: len(raster.stored_outputs(store, key)) for key in keys} == {
        key: len(outputs) for key, outputs in stored.items()
    }
    # A prefix holding many more blobs than the batch's: each raster lists its own.
    monkeypatch.setattr(raster, "_LISTED_AT_MOST", (3, 0))
    assert raster.count_stored_outputs(store, keys) is None
    # So does a listing that fails: the batch goes on, each raster with its own retries.
    monkeypatch.setattr(raster, "_LISTED_AT_MOST", (1000, 20))

    def unreachable(self, container, prefix=""):
        raise TransientError("storage unreachable (simulated)")

    monkeypatch.setattr(LocalBlobStore, "list_blobs", unreachable)
    assert raster.count_stored_outputs(store, keys) is None
