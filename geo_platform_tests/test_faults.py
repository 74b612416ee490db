"""Faults a platform meets in operation: commands at once on a new instance, a process
killed midway. Each drives the real `geo-platform` command in its own processes."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import psycopg
import pytest
import rasterio
from click.testing import CliRunner
from psycopg import sql
from rasterio.transform import from_origin

from geo_platform.backends import blob_store, stac_catalog
from geo_platform.cli import main
from geo_platform.defs.raster.sensors import COLLECTION_TAG
from geo_platform.ingest import ingest
from geo_platform.instance import get_instance
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.raster.tiers import Tier
from geo_platform.lib.stac.ids import item_id
from geo_platform.settings import AZURITE_CONNECTION_STRING, PlatformSettings

from .conftest import REAL_RASTER_TIERS, _scratch_database, conninfo
from .tier_blobs import tier_blob, tier_blobs

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
    # The run's scratch folder is named after it (the production instance is shared
    # with other tests: its run list is not this test's alone).
    (run_id,) = {path.relative_to(scratch).parts[0] for path in scratch.glob("*/cog-*/*")}
    instance = get_instance(settings)
    killed = instance.get_run_by_id(run_id)
    assert killed is not None and killed.status is dg.DagsterRunStatus.STARTED
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


def _fault_items(real_stac: Path, folder: Path, collection: str, count: int) -> tuple[Path, Path]:
    """``count`` NDJSON items of ``collection`` (the real NAIP items with new ids), and
    the collection's JSON."""
    real = [json.loads(line) for line in (real_stac / "naip-items.ndjson").open()]
    items = folder / f"{collection}.ndjson"
    with items.open("w") as out:
        for n in range(count):
            item = real[n % len(real)] | {"collection": collection}
            out.write(json.dumps(item | {"id": f"{item['id']}-c{n // len(real)}"}) + "\n")
    collection_path = folder / f"{collection}.json"
    naip = json.loads((real_stac / "naip-collection.json").read_text())
    collection_path.write_text(json.dumps(naip | {"id": collection}))
    return items, collection_path


def _stored(admin: psycopg.Connection, collection: str) -> tuple[int, int]:
    """(items, distinct ids) of ``collection`` in pgSTAC."""
    row = admin.execute(
        "SELECT count(*), count(DISTINCT id) FROM pgstac.items WHERE collection = %s",
        [collection],
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def _cut_loads_off(
    admin: psycopg.Connection,
    load: subprocess.Popen[str],
    collection: str,
    *,
    after: int,
    refuse_new: psycopg.Connection | None = None,
) -> int:
    """Once ``after`` items of the load are committed, end its connections, as a restart
    of PostgreSQL does (the server itself is shared); with ``refuse_new``, a connection to
    another database, the database then refuses new ones until the caller allows them
    again. Returns how many connections ended."""
    deadline = time.monotonic() + 120
    while load.poll() is None and time.monotonic() < deadline:
        if _stored(admin, collection)[0] >= after:
            if refuse_new:
                database = sql.Identifier(admin.info.dbname)
                refuse_new.execute(
                    sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(database)
                )
            row = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'geo_platform'"
            ).fetchone()
            if row and row[0]:
                return row[0]
            if refuse_new is not None:
                # Between two batches: no connection to end, and none can be made now.
                return 0
        time.sleep(0.01)
    return 0


@pytest.mark.integration
def test_stac_load_survives_lost_connections_and_says_what_was_committed(
    settings, real_stac, pg_settings, pgstac_database, pgstac_dsn, tmp_path, monkeypatch
):
    """pgSTAC connections ended mid-load (by pg_terminate_backend, as a restart ends
    them): a lost batch is retried on a new connection; when no new connection can be
    made the load ends in one line saying how many items were committed, and loading the
    file again gives every item exactly once."""
    monkeypatch.setenv("GEO_PLATFORM_PROFILE", "production")
    monkeypatch.setenv("GEO_PLATFORM_PG_DATABASE", pgstac_database)
    count = 6000
    with psycopg.connect(pgstac_dsn, autocommit=True, application_name="fault-test") as admin:
        # A connection lost once: the batch is written again on a new one.
        items, collection = _fault_items(real_stac, tmp_path, "fault-once", count)
        args = ["stac", "load", str(items), "--collection", str(collection), "--batch-size", "200"]
        load = _start(*args)
        assert _cut_loads_off(admin, load, "fault-once", after=1000) >= 1
        output = load.communicate(timeout=120)[0]
        assert load.returncode == 0, output
        assert output.startswith(f"{count} loaded, 0 skipped, 0 rejected"), output
        assert _stored(admin, "fault-once") == (count, count)

        # Down for longer than the retries: the load stops, saying what it committed.
        items, collection = _fault_items(real_stac, tmp_path, "fault-down", count)
        args = ["stac", "load", str(items), "--collection", str(collection), "--batch-size", "200"]
        load = _start(*args)
        server = psycopg.connect(conninfo(pg_settings, pg_settings.database), autocommit=True)
        with server:
            try:
                _cut_loads_off(admin, load, "fault-down", after=1000, refuse_new=server)
                output = load.communicate(timeout=120)[0]
            finally:
                server.execute(
                    sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(
                        sql.Identifier(pgstac_database)
                    )
                )
        assert load.returncode == 1, output
        committed, distinct = _stored(admin, "fault-down")
        assert 1000 <= committed < count and committed == distinct
        (line,) = output.splitlines()
        assert line.startswith(f"error: loading {items} stopped at lines "), line
        assert "not currently accepting connections" in line or "terminat" in line, line
        assert f"; {committed} items were committed" in line, line
        assert line.endswith("(load the file again to finish)"), line

        again = _start(*args)
        output = again.communicate(timeout=120)[0]
        assert again.returncode == 0, output
        assert output.startswith(f"{count} loaded, 0 skipped, 0 rejected"), output
        assert _stored(admin, "fault-down") == (count, count)


def _azurite_binary() -> Path | None:
    """`make services` installs Azurite into the checkout's .services; else on PATH."""
    installed = Path(__file__).resolve().parents[1] / ".services/npm/node_modules/.bin"
    for candidate in (installed / "azurite-blob", shutil.which("azurite-blob")):
        if candidate and Path(candidate).exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateAzurite:
    """An Azurite of the test's own, on a free port, that can be stopped and started again
    on the same data folder: the shared one on port 10000 is never touched."""

    def __init__(self, binary: Path, folder: Path) -> None:
        self.binary, self.folder, self.port = binary, folder, _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        return AZURITE_CONNECTION_STRING.replace("127.0.0.1:10000", f"127.0.0.1:{self.port}")

    def start(self) -> None:
        log = (self.folder.parent / "azurite.log").open("ab")
        self.process = subprocess.Popen(
            [
                *(["node"] if self.binary.suffix == ".js" else []),
                str(self.binary),
                *("--blobHost", "127.0.0.1", "--blobPort", str(self.port)),
                *("--location", str(self.folder)),
                *("--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, "Azurite exited at start"
                assert time.monotonic() < deadline, "Azurite did not answer within 30 s"
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it: Azurite then saves its metadata, which
        it otherwise writes every 5 s (a SIGKILL would lose blobs it had acknowledged)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def private_azurite(tmp_path):
    binary = _azurite_binary()
    if binary is None:
        pytest.skip("Azurite is not installed (`make services` installs it in .services/npm)")
    folder = tmp_path / "azurite"
    folder.mkdir()
    azurite = PrivateAzurite(binary, folder)
    azurite.start()
    try:
        yield azurite
    finally:
        azurite.stop()


def _assert_item_tiers_stored(item: dict, store, key: str) -> None:
    """Every asset of the item is a stored blob with the item's size and checksum."""
    assert item["assets"], item["id"]
    for tier_name, asset in item["assets"].items():
        if tier_name == "thumbnail":
            continue
        versions = tier_blobs(store, key, tier_name)
        pointed = [(c, b) for c, b in versions if store.href(c, b) == asset["href"]]
        assert len(pointed) == 1, (key, tier_name, asset["href"], versions)
        container, blob_key = pointed[0]
        with store.local_file(container, blob_key) as path:
            assert asset["file:checksum"] == "1220" + sha256_file(path), (key, tier_name)
            assert asset["file:size"] == path.stat().st_size, (key, tier_name)


@pytest.mark.integration
@pytest.mark.parametrize("profile_settings", ["production"], indirect=True)
def test_azurite_stopped_during_an_ingest_then_rerun(
    profile_settings, private_azurite, copy_real, monkeypatch
):
    """Blob storage lost while tiers are being written: each file that needed it fails
    with one line, no item points at a missing or different blob, and a re-run once the
    storage is back makes one consistent item per raster."""
    monkeypatch.setenv("GEO_PLATFORM_AZURE_CONNECTION_STRING", private_azurite.connection_string)
    settings = PlatformSettings()
    names = ["image_2000px.tif", "image_rgb.tif", "image_float.tif"]
    inputs = copy_real(*names)
    keys = [f"outage/{name}" for name in names]

    process = _start("ingest", str(inputs), "--collection", "outage")
    deadline = time.monotonic() + 120
    # Stopped once the first raster's tiers are being written: its bronze copy is down,
    # the others wait for their turn.
    while not any(settings.scratch_path.glob("*/cog-*/*")):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the ingest never started writing tiers"
        time.sleep(0.02)
    private_azurite.stop()
    output = process.communicate(timeout=180)[0]

    assert process.returncode == 1, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    by_key = {line.split()[1].rstrip(":"): line for line in lines[:-1]}
    assert sorted(by_key) == sorted(keys), output
    failed = [key for key, line in by_key.items() if line.startswith("failed")]
    assert failed, output
    endpoint = f"http://127.0.0.1:{private_azurite.port}/devstoreaccount1"
    for key in failed:
        # The last of its attempts, made once Azurite was gone, names what it was doing.
        assert by_key[key].startswith(
            f"failed  {key}: bronze/{key}: Azure Blob Storage at {endpoint} is unreachable while "
        ), by_key[key]
        assert by_key[key].endswith(": Connection refused"), by_key[key]
    assert lines[-1] == f"{len(keys) - len(failed)} ok, {len(failed)} failed"

    # What the catalog holds now only points at blobs that exist, with their checksums.
    private_azurite.start()
    store = blob_store(settings)
    catalog = stac_catalog(settings)
    cataloged = {item["id"]: item for item in catalog.search(collections=["outage"], limit=None)}
    assert len(cataloged) == len(keys) - len(failed), sorted(cataloged)
    for key in keys:
        if item := cataloged.get(item_id(key)):
            _assert_item_tiers_stored(item, store, key)

    rerun = _start("ingest", str(inputs), "--collection", "outage")
    output = rerun.communicate(timeout=180)[0]
    assert rerun.returncode == 0, output
    assert output.strip().endswith(f"{len(keys)} ok, 0 failed"), output
    items = catalog.search(collections=["outage"], limit=None)
    assert sorted(i["id"] for i in items) == sorted(item_id(key) for key in keys)
    for item in items:
        key = next(k for k in keys if item_id(k) == item["id"])
        assert set(item["assets"]) == REAL_RASTER_TIERS[key.split("/", 1)[1]] | {"thumbnail"}
        _assert_item_tiers_stored(item, store, key)


def _second_ingest_while_the_first_writes_tiers(
    settings: PlatformSettings, source: Path, collection: str, then: signal.Signals
) -> tuple[subprocess.Popen[str], subprocess.Popen[str], str]:
    """The first ingest of ``source`` paused while it writes the tiers (no database
    transaction open), so that it holds the file for as long as a second ingest of it
    needs to find out; once the second says so, the first gets ``then``. The second's
    first line of output."""
    first = _start("ingest", str(source), "--collection", collection)
    deadline = time.monotonic() + 120
    while not any(settings.scratch_path.glob("*/cog-*/*")):
        assert first.poll() is None, first.communicate()[0]
        assert time.monotonic() < deadline, "the first ingest never started writing tiers"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = _start("ingest", str(source), "--collection", collection)
        assert second.stdout is not None
        seen = second.stdout.readline()
    finally:
        os.kill(first.pid, then)
        os.kill(first.pid, signal.SIGCONT)
    return first, second, seen


def test_a_file_being_ingested_is_not_run_again_by_a_second_ingest(profile_settings, tmp_path):
    """Two ingests of one file at once both processed it; the second now waits for the
    first's run, and reports its outcome."""
    source = _raster(tmp_path / "same.tif", 1200, seed=9)
    first, second, seen = _second_ingest_while_the_first_writes_tiers(
        profile_settings, source, "once", signal.SIGCONT
    )
    outputs = [first.communicate(timeout=240)[0], seen + second.communicate(timeout=240)[0]]
    assert [first.returncode, second.returncode] == [0, 0], outputs

    instance = get_instance(profile_settings)
    (run,) = instance.get_runs(filters=dg.RunsFilter(tags={COLLECTION_TAG: "once"}))
    assert run.status is dg.DagsterRunStatus.SUCCESS
    lines = outputs[1].strip().splitlines()
    assert lines[0] == (
        f"warning: bronze/once/same.tif: already being ingested by run {run.run_id}; waiting for it"
    ), outputs[1]
    assert lines[1].startswith("ok      once/same.tif  (analysis ") and lines[1].endswith(
        f"; by run {run.run_id}, which was already running it)"
    ), outputs[1]
    assert lines[2:] == ["1 ok, 0 failed"], outputs[1]
    assert outputs[0].strip().endswith("1 ok, 0 failed"), outputs[0]
    (item,) = stac_catalog(profile_settings).search(collections=["once"], limit=None)
    assert item["id"] == "same"


def test_a_file_whose_first_ingest_dies_is_run_by_the_one_waiting_for_it(settings, tmp_path):
    source = _raster(tmp_path / "same.tif", 1200, seed=10)
    first, second, seen = _second_ingest_while_the_first_writes_tiers(
        settings, source, "orphan", signal.SIGKILL
    )
    first.wait()
    output = seen + second.communicate(timeout=240)[0]
    assert second.returncode == 0, output
    lines = output.strip().splitlines()
    assert lines[0].startswith("warning: bronze/orphan/same.tif: already being ingested by run ")
    # Its own run, with nothing borrowed from the dead one.
    assert lines[1].startswith("ok      orphan/same.tif  (analysis "), output
    assert "already running" not in lines[1] and lines[2:] == ["1 ok, 0 failed"], output
    runs = get_instance(settings).get_runs()
    # The dead one is marked failed by the run that took over.
    assert sorted(r.status.value for r in runs) == ["FAILURE", "SUCCESS"]
    (item,) = stac_catalog(settings).search(collections=["orphan"], limit=None)
    assert item["id"] == "same"
