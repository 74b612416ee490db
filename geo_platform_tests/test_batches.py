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
