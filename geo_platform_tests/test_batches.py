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
