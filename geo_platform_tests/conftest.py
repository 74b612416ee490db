import faulthandler
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pypgstac.db import PgstacDB
from pypgstac.migrate import Migrate

from geo_platform.settings import PlatformSettings, PostgresSettings

# A test that hangs (a lock never released, a thread waiting forever) would hold CI
# until its time limit with nothing to show for it: past this, every thread's stack is
# printed and the session ends with an error. The slowest test takes ~1 minute here.
HANG_AFTER_S = float(os.environ.get("GEO_PLATFORM_TEST_HANG_AFTER_S", "600"))
_real_stderr: list[int] = []


def pytest_configure(config: pytest.Config) -> None:
    # Output capture is suspended here: fd 2 is still the terminal's (or CI's log).
    _real_stderr.append(os.dup(2))


@pytest.fixture(autouse=True)
def _hang_watchdog() -> Iterator[None]:
    faulthandler.dump_traceback_later(HANG_AFTER_S, exit=True, file=_real_stderr[0])
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _no_defs_state_storage_of_a_gone_instance() -> Iterator[None]:
    """Each test starts without the DefsStateStorage that an instance entered as a context
    manager publishes in a context variable (Dagster's own code does, inside generators a
    test may leave unfinished): once that instance is collected, Dagster fails to load any
    Definitions in the process ("undefined DagsterInstance weakref"), in whichever test
    happens to run next."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield


REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

# Real rasters that must go all the way through, and the tiers each must get.
REAL_RASTER_TIERS = {
    "image_rgb.tif": {"visualization", "analysis", "archive"},
    "image_rgba.tif": {"visualization", "analysis", "archive"},
    "image_rgb_mask.tif": {"visualization", "analysis", "archive"},
    "image_nodata.tif": {"analysis", "archive"},
    "image_missing_nodata.tif": {"analysis", "archive"},
    "image_float.tif": {"analysis", "archive"},
    "image_nan.tif": {"analysis", "archive"},
    "image_colormap.tif": {"analysis", "archive"},
    "image_geos.tif": {"visualization", "analysis", "archive"},
    "image_with_offsets.tif": {"analysis", "archive"},
    "image_web.tif": {"visualization", "analysis", "archive"},
    "image_2000px.tif": {"visualization", "analysis", "archive"},
}


def _real_data(name: str) -> Path:
    folder = REAL_DATA / name
    if not folder.is_dir():
        pytest.skip(f"real test data not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def real_rasters() -> Path:
    return _real_data("rasters")


@pytest.fixture(scope="session")
def real_stac() -> Path:
    return _real_data("stac")


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PlatformSettings:
    """An embedded platform of its own: data folder and Dagster instance under tmp_path."""
    data_dir = tmp_path / "platform"
    monkeypatch.setenv("GEO_PLATFORM_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster_home"))
    monkeypatch.delenv("GEO_PLATFORM_COLLECTIONS_FILE", raising=False)
    return PlatformSettings()


@pytest.fixture
def copy_real(real_rasters: Path, tmp_path: Path):
    """Copies of real rasters (never the shared originals) in a folder of their own."""

    def _copy(*names: str, folder: str = "inputs") -> Path:
        target = tmp_path / folder
        target.mkdir(exist_ok=True)
        for name in names:
            shutil.copy2(real_rasters / name, target / name)
        return target

    return _copy


@pytest.fixture
def instance(settings: PlatformSettings) -> dg.DagsterInstance:
    from geo_platform.instance import get_instance

    return get_instance(settings)


def conninfo(settings: PostgresSettings, database: str) -> str:
    # Keywords, not settings.dsn(): a password needs no URL quoting this way.
    return make_conninfo(
        host=settings.host,
        port=settings.port,
        user=settings.user,
        password=settings.password.get_secret_value(),
        dbname=database,
    )


@pytest.fixture(scope="session")
def pg_settings() -> PostgresSettings:
    return PostgresSettings()


@contextmanager
def _scratch_database(pg: PostgresSettings, prefix: str) -> Iterator[str]:
    """A database of its own for this session (`make test` starts PostgreSQL: no skip)."""
    admin_dsn = conninfo(pg, pg.database)
    problem = ""
    try:
        admin = psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as e:
        problem = str(e)
    # Outside the except block: the message alone, not psycopg's chained traceback.
    if problem:
        pytest.fail(
            f"PostgreSQL not reachable at {pg.redacted_dsn()} "
            f"(start it with `make services`): {problem}"
        )
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def pgstac_database(pg_settings: PostgresSettings) -> Iterator[str]:
    """A scratch database with pgSTAC migrated into it, dropped after the session."""
    with _scratch_database(pg_settings, "geo_platform_test") as name:
        db = PgstacDB(conninfo(pg_settings, name))
        Migrate(db).run_migration()
        db.close()
        yield name


@pytest.fixture(scope="session")
def pgstac_dsn(pg_settings: PostgresSettings, pgstac_database: str) -> str:
    return conninfo(pg_settings, pgstac_database)


@pytest.fixture(scope="session")
def dagster_database(pg_settings: PostgresSettings) -> Iterator[str]:
    """A scratch database for a production Dagster instance's runs and events."""
    with _scratch_database(pg_settings, "dagster_test") as name:
        yield name


@pytest.fixture(params=["embedded", pytest.param("production", marks=pytest.mark.integration)])
def profile_settings(
    request: pytest.FixtureRequest, settings: PlatformSettings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PlatformSettings]:
    """The same platform on each profile; production gets scratch databases and containers."""
    if request.param == "embedded":
        yield settings
        return
    monkeypatch.setenv("GEO_PLATFORM_PROFILE", "production")
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.setenv("GEO_PLATFORM_PG_DATABASE", request.getfixturevalue("pgstac_database"))
    monkeypatch.setenv(
        "GEO_PLATFORM_PG_DAGSTER_DATABASE", request.getfixturevalue("dagster_database")
    )
    prefix = f"t{uuid.uuid4().hex[:8]}-"
    monkeypatch.setenv("GEO_PLATFORM_AZURE_CONTAINER_PREFIX", prefix)
    for name in ("GEO_PLATFORM_PGSTAC_DSN", "GEO_PLATFORM_AZURE_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)
    yield PlatformSettings()
    delete_azurite_containers(prefix)


def delete_azurite_containers(prefix: str) -> None:
    """The containers a test made: Azurite keeps every one (they were ~1,000 after a few
    days of test runs here, and its state saves grow with them)."""
    from azure.storage.blob import BlobServiceClient

    from geo_platform.settings import AZURITE_CONNECTION_STRING

    service = BlobServiceClient.from_connection_string(AZURITE_CONNECTION_STRING)
    for container in service.list_containers(name_starts_with=prefix):
        service.delete_container(container.name)
