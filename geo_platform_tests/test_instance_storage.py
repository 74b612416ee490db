"""The embedded instance's event log: what it creates is what Dagster's own storage creates."""

import sqlite3
from pathlib import Path

import pytest
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from geo_platform.dagster_instance.sqlite_storage import ReusedEngineSqliteEventLogStorage

pytestmark = pytest.mark.asset


def _database(path: Path) -> tuple[list, list, list]:
    con = sqlite3.connect(path)
    try:
        schema = sorted(con.execute("SELECT type, name, sql FROM sqlite_master").fetchall())
        version = con.execute("SELECT version_num FROM alembic_version").fetchall()
        return schema, version, con.execute("PRAGMA journal_mode").fetchall()
    finally:
        con.close()


def test_a_runs_new_database_has_dagsters_tables_schema_version_and_journal(tmp_path):
    ours = ReusedEngineSqliteEventLogStorage(str(tmp_path / "ours"))
    dagsters = SqliteEventLogStorage(str(tmp_path / "dagster"))
    for storage in (ours, dagsters):
        with storage._connect("a-run"):
            pass
        with storage._connect("a-run"):  # opened again: left as it is
            pass
    made = _database(tmp_path / "ours" / "a-run.db")
    assert made == _database(tmp_path / "dagster" / "a-run.db")
    assert made[1] and made[2] == [("wal",)]
    # The index database, made at start-up, too.
    assert _database(tmp_path / "ours" / "index.db") == _database(tmp_path / "dagster" / "index.db")
