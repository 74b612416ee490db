"""Dagster's PostgreSQL storage, with a small pool of connections kept between writes.

dagster-postgres opens a new connection for every operation (SQLAlchemy's NullPool, so
that many instances in one process never pile up idle connections). Storing one event
takes three of them: measured on this project's 2-core machine, ~90 ms per event, so
~1 s of bookkeeping per raster of a batch and ~30 s for a sensor tick that observes 300
new blobs. This keeps a few connections per process open instead (the webserver's own
pool settings, ``optimize_for_webserver``). Everything else is dagster-postgres's own
code; the production profile's dagster.yaml names this class as its ``custom`` storage.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from dagster import DagsterEventType
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.base_storage import DagsterStorage
from dagster._core.storage.event_log import SqlEventLogStorageTable
from dagster._serdes import ConfigurableClassData
from dagster_postgres import (
    DagsterPostgresStorage,
    PostgresEventLogStorage,
    PostgresRunStorage,
    PostgresScheduleStorage,
)
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)
from sqlalchemy.engine import Engine

# Connections kept per storage: a run writes its events from one thread at a time; the
# overflow covers the webserver's and the daemon's threads, closed when returned.
POOL_SIZE = 2
MAX_OVERFLOW = 8
# PostgreSQL or a proxy may drop idle connections: none is reused after this long.
POOL_RECYCLE_SECONDS = 300
# Planned events (three per raster of a run, written before its step starts) are handed to
# the storage in batches of up to this many (Dagster's own switch, off by default).
EVENT_BATCH_SIZE = "1000"
_PLANNED = {
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
}


def _pooled_engine(postgres_url: str, token_provider: Any, *, flush_wait: bool) -> Engine:
    return create_pg_engine(
        postgres_url,
        token_provider,
        isolation_level="AUTOCOMMIT",
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_recycle=POOL_RECYCLE_SECONDS,
        **({} if flush_wait else {"connect_args": {"options": "-c synchronous_commit=off"}}),
    )


class _Pooled:
    """Put before a dagster-postgres storage class: its NullPool engine is replaced by a
    pooled one, disposed with the storage."""

    _engine: Engine
    # Whether each commit waits for PostgreSQL to flush its WAL to disk (its default).
    _flush_wait = True

    def __init__(self, postgres_url: str, should_autocreate_tables: bool, token_provider: Any):
        super().__init__(  # type: ignore[call-arg]
            postgres_url, should_autocreate_tables, token_provider=token_provider
        )
        self._engine.dispose()
        self._engine = _pooled_engine(postgres_url, token_provider, flush_wait=self._flush_wait)

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()


class PooledRunStorage(_Pooled, PostgresRunStorage):
    pass


class PooledScheduleStorage(_Pooled, PostgresScheduleStorage):
    pass


class PooledEventLogStorage(_Pooled, PostgresEventLogStorage):
    """dagster-postgres's event log, with fewer statements per event:

    - It remembers the tables it has seen: stock, every asset event asks PostgreSQL
      whether the tags table exists.
    - An event is one INSERT, without the NOTIFY stock sends after it: dagster-postgres's
      event watcher polls, and keeps the NOTIFY only for webservers of older versions (this
      platform pins one version for every process).
    - A batch of planned events (a run's, at its start) is one INSERT, and each asset's
      row is updated once, with its last event; stock stores them one at a time, three
      statements each, while the run's workers wait.
    - Its commits do not wait for the WAL flush (``synchronous_commit=off``, for these
      connections only): every statement commits on its own, and waiting for the disk made
      each event take ~7 ms. A crash of the PostgreSQL server may lose the last events
      written before it (at most ~0.6 s of them), never corrupt the log or mix events of
      runs; the run and schedule storages keep waiting.

    The rows written are the ones stock writes (the same columns, from Dagster's own
    statement builders), so every reader of the log sees no difference."""

    _flush_wait = False

    def __init__(self, postgres_url: str, should_autocreate_tables: bool, token_provider: Any):
        self._tables: set[str] = set()
        super().__init__(postgres_url, should_autocreate_tables, token_provider)

    def has_table(self, table_name: str) -> bool:
        # Dagster's tables are created, never dropped, while a process runs.
        if table_name not in self._tables and super().has_table(table_name):
            self._tables.add(table_name)
        return table_name in self._tables

    def store_event(self, event: EventLogEntry) -> None:
        self._index([event], self._insert([event]))

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if not events:
            return
        if {event.get_dagster_event().event_type for event in events} <= _PLANNED:
            self._index(events, self._insert(events))
        else:  # materializations of one output over a range: stock's own batch
            super().store_event_batch(events)

    def _insert(self, events: Sequence[EventLogEntry]) -> list[int]:
        """The events' rows in one statement; their ids, in order."""
        statement = self.prepare_insert_event_batch(events)
        with self._connect() as conn:
            rows = conn.execute(statement.returning(SqlEventLogStorageTable.c.id)).fetchall()
        return [int(row[0]) for row in rows]

    def _index(self, events: Sequence[EventLogEntry], ids: Sequence[int]) -> None:
        """What stock ``store_event`` does after the insert, for each event: asset tags,
        the asset's row (its last event here), asset check executions."""
        assets = [
            (event, event_id)
            for event, event_id in zip(events, ids, strict=True)
            if event.is_dagster_event
            and event.dagster_event_type in ASSET_EVENTS
            and event.get_dagster_event().asset_key
        ]
        if assets:
            last = {event.get_dagster_event().asset_key: (event, i) for event, i in assets}
            with self.index_transaction() as conn:
                self._store_asset_event_tags(conn, *zip(*assets, strict=True))
                for event, event_id in last.values():
                    self._store_asset_event(conn, event, event_id)
        for event, event_id in zip(events, ids, strict=True):
            if event.is_dagster_event and event.dagster_event_type in ASSET_CHECK_EVENTS:
                self.store_asset_check_event(event, event_id)


class PooledPostgresStorage(DagsterPostgresStorage):
    """``DagsterPostgresStorage`` whose run, event log and schedule storages keep a pool
    of connections."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: ConfigurableClassData | None = None,
        token_provider: Any = None,
    ) -> None:
        self.postgres_url = postgres_url
        self.should_autocreate_tables = should_autocreate_tables
        self._inst_data = inst_data
        args = (postgres_url, should_autocreate_tables, token_provider)
        # Read by Dagster at each event: every process with this instance batches.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        self._run_storage = PooledRunStorage(*args)
        self._event_log_storage = PooledEventLogStorage(*args)
        self._schedule_storage = PooledScheduleStorage(*args)
        DagsterStorage.__init__(self)  # type: ignore[arg-type]

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Any
    ) -> PooledPostgresStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
