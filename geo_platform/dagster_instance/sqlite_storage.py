"""Dagster's SQLite event log, with its engines and a connection per database kept.

The stock storage builds a new engine (and has SQLAlchemy inspect the database anew)
for every connection, and checks that a table exists before many writes. This keeps
one engine per database file, each with one open connection (a pool of one, more only
while threads overlap), and remembers tables and columns once seen. Both matter for a batch of
small rasters: each event is a write to the run's database and to the index, and
opening and closing a connection for each made SQLite checkpoint its write-ahead log
on every close, the last connection to a database gone; that was most of an event's
cost. An open connection holds no lock between transactions (Dagster's databases are
in WAL mode: readers never wait for it). Commits do not wait for the disk
(``synchronous=NORMAL``): SQLite's advice for WAL, consistent after a crash of the
process or the machine; a power cut may lose the last events, never corrupt the log.
It also reads Dagster's migration scripts once per process, not for every database it
opens (~50 ms each, and a run's new database ran Alembic's whole ``stamp`` command:
~0.15 s a run). Everything else is Dagster's own code; the embedded profile's
dagster.yaml names this class.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dagster._core.storage.event_log.schema import SqlEventLogStorageMetadata
from dagster._core.storage.event_log.sqlite import sqlite_event_log
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sql import get_alembic_config
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError
from sqlalchemy.pool import QueuePool

# Engines kept per process: the index, the runless shard, and the newest runs' shards.
_MAX_ENGINES = 32


class ReusedEngineSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` that reuses an engine per shard and caches table checks."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._engines_lock = threading.Lock()
        self._tables: set[str] = set()
        self._asset_key_columns: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(
        cls, inst_data: Any, config_value: Any
    ) -> ReusedEngineSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def _engine(self, shard: str) -> Engine:
        with self._engines_lock:
            engine = self._engines.pop(shard, None)
            if engine is None:
                engine = create_engine(
                    self.conn_string_for_shard(shard),
                    poolclass=QueuePool,
                    pool_size=1,
                    max_overflow=8,
                    # Used by one thread at a time (``_db_lock``), not always the same one.
                    connect_args={
                        "timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                        "check_same_thread": False,
                    },
                )
                event.listen(engine, "connect", _commit_without_fsync)
            self._engines[shard] = engine
            while len(self._engines) > _MAX_ENGINES:
                _, oldest = self._engines.popitem(last=False)
                oldest.dispose()
            return engine

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:
            engine = self._engine(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _initdb(self, engine: Engine, for_index_shard: bool = False) -> None:
        """Dagster's, except in the two common cases: a database already at the newest
        schema is left alone, and a run's new database (empty) gets the tables and the
        newest schema version directly. Anything else (an older schema, a half-made
        database, another process creating it at the same moment) is Dagster's own
        ``_initdb``, with its retries."""
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            current = context.get_current_revision()
            head = _migration_scripts().get_current_head()
            if current is not None and current == head:
                return
            fresh = current is None and not for_index_shard and not _table_names(conn)
            if fresh:
                try:
                    SqlEventLogStorageMetadata.create_all(conn)
                    conn.execute(text("PRAGMA journal_mode=WAL;"))
                    context.stamp(_migration_scripts(), "head")
                    conn.commit()
                    return
                except (DatabaseError, sqlite3.DatabaseError):
                    # Another process creating it at the same moment: Dagster's retries.
                    conn.rollback()
        super()._initdb(engine, for_index_shard=for_index_shard)

    def has_table(self, table_name: str) -> bool:
        # Dagster's tables are created, never dropped, while a process runs.
        if table_name not in self._tables and super().has_table(table_name):
            self._tables.add(table_name)
        return table_name in self._tables

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        # Dagster has SQLAlchemy inspect the asset key table on every asset event (~1.5 ms
        # each, 8 a raster); migrations add columns, none drops one while a process runs.
        if column_name not in self._asset_key_columns and super()._has_asset_key_col_on_connection(
            conn, column_name
        ):
            self._asset_key_columns.add(column_name)
        return column_name in self._asset_key_columns


def _commit_without_fsync(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


@functools.cache
def _migration_scripts() -> ScriptDirectory:
    """Dagster's Alembic scripts, read once (their head is what a new database is stamped with)."""
    return ScriptDirectory.from_config(get_alembic_config(sqlite_event_log.__file__))


def _table_names(conn: Connection) -> list[str]:
    return [row[0] for row in conn.execute(text("SELECT name FROM sqlite_master"))]
