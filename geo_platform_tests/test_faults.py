"""Faults a platform meets in operation: commands at once on a new instance, a process
killed midway. Each drives the real `geo-platform` command in its own processes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio.transform import from_origin

from geo_platform.backends import blob_store, stac_catalog
from geo_platform.cli import main
from geo_platform.ingest import ingest
from geo_platform.instance import get_instance
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.raster.tiers import Tier
from geo_platform.settings import PlatformSettings

from .conftest import _scratch_database
from .tier_blobs import tier_blob

pytestmark = pytest.mark.asset

CLI = [str(Path(sys.executable).parent / "geo-platform")]


def _start(*args: str) -> subprocess.Popen[str]:
    # The environment the test's monkeypatching set: the same profile, data and databases.
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _raster(path: Path, size: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": from_origin(500_000 + seed * 10_000, 5_000_000, 10, 10),
        "tiled": True,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rng.integers(0, 255, (3, size, size), dtype=np.uint8))
    return path


@pytest.fixture
def fresh_instance(profile_settings: PlatformSettings, pg_settings, monkeypatch):
    """The profile's settings with a Dagster instance nobody has created yet."""
    if profile_settings.profile.value == "embedded":
        assert not profile_settings.dagster_home.exists()
        yield profile_settings
        return
    with _scratch_database(pg_settings, "dagster_fresh") as database:
        monkeypatch.setenv("GEO_PLATFORM_PG_DAGSTER_DATABASE", database)
        yield PlatformSettings()


def test_concurrent_ingests_on_a_new_instance_each_file_once(fresh_instance, tmp_path):
    """Dagster creates its tables when an instance first loads: two processes doing it at
    once left the SQLite instance with two alembic heads, or crashed one process."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    a, b, c = (_raster(inputs / f"{n}.tif", 64, seed) for seed, n in enumerate("abc"))
    processes = [
        _start("ingest", str(a), "--collection", "burst"),
        _start("ingest", str(a), str(b), "--collection", "burst"),
        _start("ingest", str(c), "--collection", "burst"),
    ]
    outputs = [p.communicate(timeout=240)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    assert "1 ok, 0 failed" in outputs[0] and "2 ok, 0 failed" in outputs[1], outputs

    items = stac_catalog(fresh_instance).search(collections=["burst"], limit=None)
    assert sorted(i["id"] for i in items) == ["a", "b", "c"]
    # The instance is healthy afterwards: one more ingest works, and runs are readable.
    again = _start("ingest", str(b), "--collection", "burst")
    assert again.communicate(timeout=120)[0].strip().endswith("1 ok, 0 failed")
    runs = get_instance(fresh_instance).get_runs()
    assert runs and all(r.status is dg.DagsterRunStatus.SUCCESS for r in runs)


def test_killed_ingest_is_failed_reclaimed_and_rerun_to_one_consistent_item(
    profile_settings, tmp_path
):
    """kill -9 midway left its temporary files forever and the run STARTED."""
    settings = profile_settings
    source = _raster(tmp_path / "big.tif", 3000, seed=7)
    process = _start("ingest", str(source), "--collection", "crash")
    scratch = settings.scratch_path
    deadline = time.monotonic() + 120
    # Killed once it is writing tiers: its run folder holds a COG in the making.
    while not any(scratch.glob("*/cog-*/*")):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the ingest never started writing tiers"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    instance = get_instance(settings)
    (killed,) = instance.get_runs()
    assert killed.status is dg.DagsterRunStatus.STARTED
    assert any(scratch.iterdir())

    rerun = _start("ingest", str(source), "--collection", "crash")
    output = rerun.communicate(timeout=240)[0]
    assert rerun.returncode == 0, output
    killed = instance.get_run_by_id(killed.run_id)
    assert killed is not None and killed.status is dg.DagsterRunStatus.FAILURE
    assert list(scratch.iterdir()) == []

    (item,) = stac_catalog(settings).search(collections=["crash"], limit=None)
    store = blob_store(settings)
    assert set(item["assets"]) == {"visualization", "analysis", "archive", "thumbnail"}
    for tier in Tier:
        asset = item["assets"][tier.value]
        container, key = tier_blob(store, "crash/big.tif", tier.value)
        assert asset["href"] == store.href(container, key)
        with store.local_file(container, key) as path:
            assert asset["file:checksum"] == "1220" + sha256_file(path)
            assert asset["file:size"] == path.stat().st_size


@pytest.mark.parametrize("name", [".", "..", "a\\b", "a/b", "", " x"])
def test_collection_names_follow_one_rule_with_a_one_line_error(settings, tmp_path, name):
    source = _raster(tmp_path / "a.tif", 16, seed=1)
    result = CliRunner().invoke(main, ["ingest", str(source), "--collection", name])
    assert result.exit_code == 2, result.output
    assert "invalid collection name" in result.output and "Traceback" not in result.output
    assert not (settings.data_dir / "bronze").exists()


def test_file_names_that_would_escape_or_fold_fail_alone(profile_settings, tmp_path):
    """A file named ..\\..\\etc\\x.tif became blobs under ../../etc/ on Azure."""
    folder = tmp_path / "in"
    folder.mkdir()
    good = _raster(folder / "good.tif", 16, seed=2)
    hostile = folder / "..\\..\\etc\\x.tif"
    hostile.write_bytes(good.read_bytes())
    outcomes = ingest(
        [good, hostile], collection="names", output_tier="analysis", settings=profile_settings
    )
    by_key = {o.blob_key: o for o in outcomes}
    assert by_key["names/good.tif"].ok
    bad = by_key["names/..\\..\\etc\\x.tif"]
    assert not bad.ok and str(hostile) in bad.message and "backslash" in bad.message
    store = blob_store(profile_settings)
    assert [b.key for b in store.list_blobs("bronze")] == ["names/good.tif"]


def test_links_leading_out_of_an_ingested_folder_are_skipped(settings, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _raster(folder / "good.tif", 16, seed=3)
    (folder / "passwd.tif").symlink_to("/etc/passwd")
    (folder / "again.tif").symlink_to(folder / "good.tif")  # inside the folder: kept

    result = CliRunner().invoke(main, ["ingest", str(folder), "--collection", "links"])
    assert result.exit_code == 0, result.output
    assert f"warning: {folder / 'passwd.tif'}: skipped, a link leading out of" in result.output
    bronze = sorted(b.key for b in blob_store(settings).list_blobs("bronze"))
    assert bronze == ["links/again.tif", "links/good.tif"]

    followed = CliRunner().invoke(
        main, ["ingest", str(folder), "--collection", "links", "--follow-symlinks"]
    )
    assert "links/passwd.tif" in followed.output and followed.exit_code == 1


def test_unexpected_failures_are_one_line_unless_verbose(settings, monkeypatch):
    import geo_platform.backends

    def broken(_settings):
        raise RuntimeError("catalog exploded\nsecond line")

    monkeypatch.setattr(geo_platform.backends, "stac_catalog", broken)
    result = CliRunner().invoke(main, ["stac", "search"])
    assert result.exit_code == 1
    assert result.output == (
        "error: RuntimeError: catalog exploded (--verbose shows the traceback)\n"
    )
    verbose = CliRunner().invoke(main, ["--verbose", "stac", "search"])
    assert isinstance(verbose.exception, RuntimeError)


def test_the_sensor_never_reruns_what_the_cli_ingests_with_the_daemon_running(settings, tmp_path):
    """With `make dev` running, files of a CLI ingest ran twice (CLI and sensor), and the
    sensor re-ran files the CLI had failed as invalid. A third file dropped straight into
    bronze shows the sensor is awake: it must be the only one the sensor runs."""
    from geo_platform.instance import ensure_dagster_home, ensure_workspace

    os.environ["GEO_PLATFORM_RUN_SENSOR_SETTLE_SECONDS"] = "3"
    try:
        home = ensure_dagster_home(settings)
        get_instance(settings)  # created before the daemon and the CLI share it
        daemon = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster-daemon"),
                "run",
                "-w",
                str(ensure_workspace(home)),
            ],
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "daemon.log").open("w"),
            start_new_session=True,
        )
        try:
            inputs = tmp_path / "in"
            inputs.mkdir()
            _raster(inputs / "good.tif", 32, seed=4)
            (inputs / "broken.tif").write_bytes(b"II*\0 not a tiff")
            cli = _start("ingest", str(inputs), "--collection", "cli")
            output = cli.communicate(timeout=180)[0]
            assert "ok      cli/good.tif" in output and "cli/broken.tif" in output, output

            control = _raster(tmp_path / "control.tif", 32, seed=5)
            blob_store(settings).upload_file(control, "bronze", "direct/control.tif")
            instance = get_instance(settings)
            deadline = time.monotonic() + 150
            while True:
                sensor_runs = instance.get_runs(
                    filters=dg.RunsFilter(tags={"dagster/sensor_name": "bronze_rasters"})
                )
                covered = {
                    r.tags.get("dagster/asset_partition_range_start") for r in sensor_runs
                } | {r.tags.get("dagster/partition") for r in sensor_runs}
                if "direct/control.tif" in covered:
                    break
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the sensor never ran the control file"
                time.sleep(1)
            assert covered - {None} == {"direct/control.tif"}
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
    finally:
        del os.environ["GEO_PLATFORM_RUN_SENSOR_SETTLE_SECONDS"]
