"""The production instance at scale: its limits serialize the catalog writes of a
collection, not its GDAL work, and Dagster's storage keeps its connections."""

import json
import multiprocessing
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geo_platform import backends
from geo_platform.lib.stac.bbox import union_bbox
from geo_platform.lib.stac.ids import item_id
from geo_platform.processing import raster as processing
from geo_platform.resources.blob_store import BRONZE
from geo_platform.runs import RasterRunner
from geo_platform.settings import PlatformSettings

pytestmark = pytest.mark.integration


def _raster(path: Path, number: int) -> Path:
    profile = {
        "driver": "GTiff",
        "width": 64,
        "height": 64,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        # Far apart: the collection's extent shows whether every item counted.
        "transform": from_origin(300_000 + number * 50_000, 5_200_000 + number * 40_000, 10, 10),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.full((64, 64), number + 1, dtype="uint16"), 1)
    return path


def _one_run(etags: dict[str, str], first: str, both_running: Any, report: Path) -> None:
    """A run of ``etags`` in a process of its own (as the daemon launches runs), whose first
    raster waits, inside the run's step, until the other process's first raster is being
    processed too: a pool or run limit that serialized the collection's runs would let
    only one of them in."""
    process_raster = processing.process_raster

    def waiting(key: str, *args):
        if key == first:
            try:
                both_running.wait()
            except threading.BrokenBarrierError:
                message = f"{key}: the other run's GDAL work never ran beside it"
                raise AssertionError(message) from None
        return process_raster(key, *args)

    processing.process_raster = waiting
    outcomes: list[tuple[str, str]] = []
    RasterRunner(PlatformSettings()).run(
        etags,
        output_tier="analysis",
        batch_size=10,
        done=lambda outcome: outcomes.append((outcome.blob_key, outcome.message)),
    )
    report.write_text(json.dumps(outcomes))


@pytest.mark.parametrize("profile_settings", ["production"], indirect=True)
def test_two_runs_of_one_collection_do_their_gdal_work_at_once_and_every_write_counts(
    profile_settings: PlatformSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("GEO_PLATFORM_RUN_WORKERS", "1")  # one raster at a time per run
    store = backends.blob_store(profile_settings)
    collection = f"pair{uuid.uuid4().hex[:6]}"
    keys = [f"{collection}/r{n}.tif" for n in range(4)]
    for n, key in enumerate(keys):
        store.upload_file(_raster(tmp_path / f"r{n}.tif", n), BRONZE, key)
    etags = {key: store.info(BRONZE, key).etag for key in keys}

    # Two processes, as the daemon launches two runs (or two commands run): each with its
    # own instance, connections and GDAL, and the environment set above.
    spawn = multiprocessing.get_context("spawn")
    both_running = spawn.Barrier(2, timeout=60)
    reports = [tmp_path / "first.json", tmp_path / "second.json"]
    runs = [
        spawn.Process(
            target=_one_run, args=({k: etags[k] for k in part}, part[0], both_running, report)
        )
        for part, report in zip((keys[:2], keys[2:]), reports, strict=True)
    ]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=300)
    for run in runs:
        if run.is_alive():
            run.kill()
    assert [run.exitcode for run in runs] == [0, 0]
    outcomes = [tuple(o) for report in reports for o in json.loads(report.read_text())]
    assert sorted(outcomes) == [(key, "ok") for key in keys]

    # Both runs wrote items and grew the collection's extent at about the same time:
    # writes taking turns, no item and no extent update is lost.
    catalog = backends.stac_catalog(profile_settings)
    items = [catalog.get_item(collection, item_id(key)) for key in keys]
    assert all(item is not None for item in items)
    extent = catalog.get_collection(collection)["extent"]["spatial"]["bbox"][0]
    assert extent == pytest.approx(union_bbox(item["bbox"] for item in items))


@pytest.mark.parametrize("profile_settings", ["production"], indirect=True)
def test_the_production_instance_keeps_its_database_connections(
    profile_settings: PlatformSettings,
):
    from sqlalchemy import text

    from geo_platform.instance import get_instance

    instance = get_instance(profile_settings)
    storage = instance.event_log_storage
    pids = set()
    for _ in range(3):
        with storage.index_connection() as conn:
            pids.add(conn.execute(text("SELECT pg_backend_pid()")).scalar())
    # Stock dagster-postgres opens a connection (a new backend) for every operation.
    assert len(pids) == 1
    instance.dispose()
