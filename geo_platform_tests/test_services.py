"""The local services of the production profile, as `make services` leaves them.

PostgreSQL with PostGIS and pgSTAC, a Dagster instance on PostgreSQL built from
dagster.production.yaml, and Azurite. `make test` starts the services first, so these
tests fail (not skip) when a service is unreachable.
"""

from __future__ import annotations

import ipaddress
import os
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from geo_platform.instance import instance_template
from geo_platform.settings import AZURITE_CONNECTION_STRING, PostgresSettings, Profile

pytestmark = pytest.mark.integration

START_HINT = "start the services with `make services`"


@pytest.fixture(scope="module")
def pg_settings() -> PostgresSettings:
    return PostgresSettings()


def _connect(settings: PostgresSettings, database: str | None = None) -> psycopg.Connection:
    try:
        # Keywords rather than settings.dsn(): no URL quoting needed for the password.
        return psycopg.connect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password.get_secret_value(),
            dbname=database or settings.database,
            connect_timeout=5,
            autocommit=True,
        )
    except psycopg.OperationalError as exc:
        problem = str(exc)
    # Outside the except block: the message alone, not psycopg's chained traceback.
    pytest.fail(
        f"PostgreSQL not reachable at {settings.redacted_dsn(database)} ({START_HINT}): {problem}"
    )


@pytest.fixture
def geo_db(pg_settings: PostgresSettings):
    with _connect(pg_settings) as conn:
        yield conn


def test_postgis_answers_in_the_platform_database(geo_db):
    version = geo_db.execute("SELECT postgis_lib_version()").fetchone()[0]
    assert version.startswith("3."), version
    # A reprojection needs PostGIS's PROJ data, not just the extension's SQL.
    x, y = geo_db.execute(
        "SELECT ST_X(p), ST_Y(p) FROM "
        "(SELECT ST_Transform(ST_SetSRID(ST_MakePoint(10, 50), 4326), 3857) AS p) AS t"
    ).fetchone()
    assert x == pytest.approx(1113194.9, abs=1)
    assert y == pytest.approx(6446275.8, abs=1)


def test_pgstac_schema_is_migrated_to_0_10(geo_db):
    version = geo_db.execute("SELECT pgstac.get_version()").fetchone()[0]
    assert version.startswith("0.10."), version


def _listening_addresses(port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Addresses with a TCP socket listening on `port`, from /proc (no traffic sent)."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(bytes.fromhex(address_hex[i : i + 8])[::-1] for i in range(0, width, 8))
            address = ipaddress.ip_address(raw)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            found.append(address)
    return found


def test_postgresql_listens_on_loopback_only(geo_db, pg_settings):
    listen = geo_db.execute("SHOW listen_addresses").fetchone()[0]
    entries = {entry.strip() for entry in listen.split(",")}
    assert entries and entries <= {"localhost", "127.0.0.1", "::1"}, listen
    addresses = _listening_addresses(pg_settings.port)
    assert addresses, f"nothing listens on TCP port {pg_settings.port}"
    assert all(address.is_loopback for address in addresses), addresses


@pytest.fixture
def production_instance(tmp_path, monkeypatch, pg_settings):
    """A DagsterInstance from dagster.production.yaml, on the `dagster` database."""
    # The YAML reads these without defaults; give it the settings' values.
    for name, value in {
        "GEO_PLATFORM_PG_HOST": pg_settings.host,
        "GEO_PLATFORM_PG_PORT": str(pg_settings.port),
        "GEO_PLATFORM_PG_USER": pg_settings.user,
        "GEO_PLATFORM_PG_PASSWORD": pg_settings.password.get_secret_value(),
        "GEO_PLATFORM_PG_DAGSTER_DATABASE": pg_settings.dagster_database,
    }.items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_template(Profile.PRODUCTION, home))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    _connect(pg_settings, pg_settings.dagster_database).close()  # fail clearly if down
    instance = dg.DagsterInstance.get()
    yield instance
    instance.dispose()


@dg.op
def _trivial_op() -> int:
    return 1


@dg.job
def _trivial_job():
    _trivial_op()


@dg.asset(pool="pgstac_load")
def _pooled_writer() -> None:
    return None


def test_dagster_runs_succeed_on_the_postgres_instance(production_instance):
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    assert isinstance(production_instance.run_storage, PostgresRunStorage)
    assert isinstance(production_instance.event_log_storage, PostgresEventLogStorage)

    result = _trivial_job.execute_in_process(instance=production_instance)
    assert result.success
    stored = production_instance.get_run_by_id(result.run_id)
    assert stored is not None and stored.status == dg.DagsterRunStatus.SUCCESS


def test_only_the_event_log_commits_without_waiting_for_the_disk(production_instance):
    """Events are many and a lost last one is harmless; a run's status is not."""
    from sqlalchemy import text

    def synchronous_commit(storage) -> str:
        with storage._engine.connect() as conn:
            return conn.execute(text("SHOW synchronous_commit")).scalar_one()

    assert synchronous_commit(production_instance.event_log_storage) == "off"
    assert synchronous_commit(production_instance.run_storage) == "on"
    assert synchronous_commit(production_instance.schedule_storage) == "on"


def test_a_pool_gets_one_slot_and_runs_are_queued_within_limits(production_instance):
    result = dg.materialize([_pooled_writer], instance=production_instance)
    assert result.success
    info = production_instance.event_log_storage.get_concurrency_info("pgstac_load")
    assert info.limit == 1 and info.claimed_slots == []

    queue = production_instance.get_concurrency_config().run_queue_config
    assert queue is not None
    assert queue.max_concurrent_runs == 2
    assert {"key": "dagster/backfill", "limit": 1} in queue.tag_concurrency_limits


def test_azurite_creates_and_lists_a_container():
    from azure.core.exceptions import ServiceRequestError
    from azure.storage.blob import BlobServiceClient

    client = BlobServiceClient.from_connection_string(
        AZURITE_CONNECTION_STRING, retry_total=0, connection_timeout=5
    )
    name = f"test-services-{uuid.uuid4().hex[:12]}"
    try:
        container = client.create_container(name)
    except ServiceRequestError as exc:
        problem = str(exc)
    else:
        problem = None
    if problem is not None:
        pytest.fail(f"Azurite not reachable at {client.url} ({START_HINT}): {problem}")
    try:
        container.upload_blob("hello.txt", b"hello")
        assert name in [c.name for c in client.list_containers(name_starts_with=name)]
        assert [b.name for b in container.list_blobs()] == ["hello.txt"]
        assert container.download_blob("hello.txt").readall() == b"hello"
    finally:
        client.delete_container(name)


_RANGE = dg.StaticPartitionsDefinition(["a", "b", "c"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec("_ranged", partitions_def=_RANGE),
        dg.AssetSpec("_downstream", deps=["_ranged"], partitions_def=_RANGE),
    ],
    check_specs=[dg.AssetCheckSpec("rows_positive", asset="_ranged")],
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
)
def _ranged_pipeline(context):
    """As the raster pipeline reports a run's partitions: each as it is done."""
    for key in context.partition_keys:
        yield dg.AssetMaterialization("_ranged", partition=key, metadata={"rows": 3})
        yield dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey("_ranged"), check_name="rows_positive", passed=True, partition=key
        )
        yield dg.AssetMaterialization("_downstream", partition=key)


def _stored(engine) -> dict[str, list]:
    """What a run left in the event log's tables, without ids, run ids and timestamps."""
    from sqlalchemy import text

    queries = {
        "rows": "SELECT count(*) FROM event_logs",
        "events": "SELECT dagster_event_type, asset_key, partition, step_key FROM event_logs "
        "WHERE dagster_event_type IS NOT NULL ORDER BY id",
        # Each asset's row holds its last event (the batch's, not its first).
        "assets": "SELECT a.asset_key, a.last_run_id IS NOT NULL, a.last_materialization "
        "IS NOT NULL, a.last_materialization_timestamp = max(e.timestamp) FROM asset_keys a "
        "JOIN event_logs e USING (asset_key) WHERE e.dagster_event_type IN "
        "('ASSET_MATERIALIZATION', 'ASSET_MATERIALIZATION_PLANNED') GROUP BY a.asset_key, "
        "a.last_run_id, a.last_materialization, a.last_materialization_timestamp "
        "ORDER BY a.asset_key",
        "checks": "SELECT asset_key, check_name, partition, execution_status, "
        "evaluation_event_storage_id IS NOT NULL FROM asset_check_executions ORDER BY id",
        "tags": "SELECT asset_key, key FROM asset_event_tags ORDER BY event_id, key",
    }
    with engine.connect() as conn:
        return {name: [tuple(r) for r in conn.execute(text(q))] for name, q in queries.items()}


def test_the_event_log_writes_what_dagsters_writes_in_fewer_statements(
    pg_settings, tmp_path, monkeypatch
):
    """A ranged run with planned events, materializations, a check and a dependency, on
    the production profile's event log and on stock dagster-postgres: the same rows; ours
    sends no NOTIFY and writes the run's planned events in one statement."""
    from sqlalchemy import event as sqlalchemy_event

    from geo_platform_tests.conftest import _scratch_database

    # Set by the storage when missing; removed again after this test.
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "")
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE")
    storages = {
        "stock": "storage:\n  postgres:\n    postgres_url: {url}\n",
        "ours": "storage:\n  custom:\n    module: geo_platform.dagster_instance.postgres_storage\n"
        "    class: PooledPostgresStorage\n    config:\n      postgres_url: {url}\n",
    }
    stored, statements = {}, []
    for name, storage in storages.items():
        with _scratch_database(pg_settings, f"events_{name}") as database:
            url = (
                f"postgresql+psycopg2://{pg_settings.user}:"
                f"{pg_settings.password.get_secret_value()}@{pg_settings.host}:"
                f"{pg_settings.port}/{database}"
            )
            home = tmp_path / name
            home.mkdir()
            (home / "dagster.yaml").write_text(storage.format(url=url))
            instance = dg.DagsterInstance.from_config(str(home))
            engine = instance.event_log_storage._engine
            if name == "ours":
                assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "1000"
                sqlalchemy_event.listen(
                    engine,
                    "before_cursor_execute",
                    lambda conn, cursor, sql, *args: statements.append(sql),
                )
            result = dg.materialize(
                [_ranged_pipeline],
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": "a",
                    "dagster/asset_partition_range_end": "c",
                },
            )
            assert result.success
            stored[name] = _stored(engine)
            instance.dispose()
    assert stored["ours"] == stored["stock"]
    planned = [row for row in stored["ours"]["events"] if row[0].endswith("_PLANNED")]
    assert len(planned) == 7  # a partition of each asset, and the check
    assert not [sql for sql in statements if "NOTIFY" in sql]
    inserts = [sql for sql in statements if sql.startswith("INSERT INTO event_logs")]
    # An INSERT per event but the planned ones, written together.
    assert len(inserts) == stored["ours"]["rows"][0][0] - len(planned) + 1
