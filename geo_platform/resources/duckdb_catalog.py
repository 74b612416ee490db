"""The embedded STAC catalog: one DuckDB file.

Geometry is stored as WKB with its envelope in plain columns, so that neither a write
nor a search loads the spatial extension: the envelope prunes in SQL and the exact
intersection runs in GEOS through shapely, only for candidates whose envelope is not
inside the search box. Searches open the file read-only (several processes can search
at once); writers take DuckDB's single-writer lock for one short transaction.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson

from geo_platform.errors import InvalidInputError, TransientError
from geo_platform.lib.duckdb_spatial import load_spatial
from geo_platform.lib.stac.bbox import MERGED_ARCS_SQL, union_bbox
from geo_platform.lib.stac.collection import CollectionAggregate, TierAggregate
from geo_platform.lib.stac.geometry import BoxMatcher, item_geometries
from geo_platform.lib.stac.items import item_name, item_time_span
from geo_platform.lib.stac.loader import LoadMethod, LoadResult
from geo_platform.lib.stac.search import (
    QUERY_OPERATORS,
    Bbox,
    PropertyCondition,
    check_search,
    parse_timestamp,
)
from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.sql import REQUIRES_SPATIAL, migrations

# Catalog files whose schema this process has brought up to date.
_SCHEMA_READY: set[str] = set()
# Read-write connections this process holds, by file: DuckDB refuses a read-only
# connection to a file the same process has open read-write, so reads share it then.
_WRITERS: Counter[str] = Counter()
_WRITERS_LOCK = threading.Lock()
# One write transaction at a time per file within this process (DuckDB's file lock
# keeps other processes out): what keeps (collection, id) unique without an index.
_WRITE_LOCKS: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
# Above this many items a batch goes to DuckDB as an Arrow table (fastest in bulk);
# below, as list parameters, which spares a one-item write pyarrow's import.
_ARROW_MIN_ITEMS = 256


@dataclass(kw_only=True, frozen=True)
class DuckDBCatalog(StacCatalog):
    """The embedded catalog: one DuckDB file.

    DuckDB lets one process write a file at a time, and Dagster runs steps in several
    processes: connections are short-lived, and a busy file is retried with backoff
    for ``lock_timeout_seconds``, then a TransientError.
    """

    path: str
    lock_timeout_seconds: float = 60.0

    @property
    def location(self) -> str:
        """Where the catalog is, for messages."""
        return self.path

    @contextmanager
    def _connection(self, *, write: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection for one read, or one transaction that commits on success."""
        con = self._open(write=write)
        try:
            if write:
                with self._transaction(con):
                    yield con
            else:
                yield con
        finally:
            self._close(con, write=write)

    @contextmanager
    def _transaction(self, con: duckdb.DuckDBPyConnection) -> Iterator[None]:
        with _WRITE_LOCKS[self.path], _transaction(con):
            yield

    def _open(self, *, write: bool) -> duckdb.DuckDBPyConnection:
        """A connection to a catalog whose schema is up to date. The schema is checked
        once per process, on the connection the caller asked for."""
        if self.path in _SCHEMA_READY:
            return self._connect(write=write)
        if not write and not Path(self.path).exists():
            self._migrate(self._connect(write=True), close=True)
            return self._connect(write=False)
        con = self._connect(write=write)
        try:
            known = {number for number, _, _ in migrations("duckdb")}
            if known <= _applied_migrations(con, create=False):
                _SCHEMA_READY.add(self.path)
                return con
            if write:
                self._migrate(con, close=False)
                return con
        except BaseException:
            self._close(con, write=write)
            raise
        # Read-only: the migration needs the writer's lock, then read as asked.
        self._close(con, write=False)
        self._migrate(self._connect(write=True), close=True)
        return self._connect(write=False)

    def _close(self, con: duckdb.DuckDBPyConnection, *, write: bool) -> None:
        """Close (a write connection checkpoints its changes into the file)."""
        try:
            con.close()
        finally:
            if write:
                with _WRITERS_LOCK:
                    _WRITERS[self.path] -= 1

    def _connect(self, *, write: bool) -> duckdb.DuckDBPyConnection:
        if write:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.01
        while True:
            with _WRITERS_LOCK:
                read_only = not write and _WRITERS[self.path] == 0
                try:
                    con = duckdb.connect(self.path, read_only=read_only)
                except (duckdb.IOException, duckdb.ConnectionException) as e:
                    # Another process holds the file ("lock"), or this one has it open
                    # with the other mode ("different configuration"): wait for it.
                    message = str(e).lower()
                    if "lock" not in message and "configuration" not in message:
                        raise
                    if time.monotonic() > deadline:
                        raise TransientError(f"catalog {self.path} is busy: {e}") from e
                else:
                    if write:
                        _WRITERS[self.path] += 1
                    # A long query would draw a progress bar on stdout, where
                    # `stac search` prints its JSON.
                    con.execute("SET enable_progress_bar = false")
                    return con
            time.sleep(delay)
            delay = min(delay * 2, 0.5)

    def _migrate(self, con: duckdb.DuckDBPyConnection, *, close: bool) -> None:
        """Apply the numbered SQL files the file has not seen, in one transaction (a crash
        leaves the file as it was, record included), on a read-write ``con``."""
        try:
            with _transaction(con):
                applied = _applied_migrations(con, create=True)
                for number, _name, text in migrations("duckdb"):
                    if number in applied:
                        continue
                    if text.startswith(REQUIRES_SPATIAL):
                        load_spatial(con)
                    con.execute(text)
                    con.execute("INSERT INTO schema_migrations VALUES (?, now())", [number])
        finally:
            if close:
                self._close(con, write=True)
        _SCHEMA_READY.add(self.path)

    def upsert_collection(self, collection: dict[str, Any]) -> None:
        if not isinstance(collection, dict) or not isinstance(collection.get("id"), str):
            raise InvalidInputError("collection", "is not a JSON object with an id")
        with self._connection(write=True) as con:
            con.execute(
                "INSERT OR REPLACE INTO collections (id, content, updated_at) VALUES (?, ?, now())",
                [collection["id"], orjson.dumps(collection).decode()],
            )

    def update_collection(
        self, collection_id: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        # One write transaction: DuckDB's single writer makes concurrent updates take turns.
        with self._connection(write=True) as con:
            row = con.execute(
                "SELECT content FROM collections WHERE id = ?", [collection_id]
            ).fetchone()
            collection = change(orjson.loads(row[0]) if row else None)
            con.execute(
                "INSERT OR REPLACE INTO collections (id, content, updated_at) VALUES (?, ?, now())",
                [collection["id"], orjson.dumps(collection).decode()],
            )
        return collection

    def get_collection(self, collection_id: str) -> dict[str, Any] | None:
        with self._connection(write=False) as con:
            row = con.execute(
                "SELECT content FROM collections WHERE id = ?", [collection_id]
            ).fetchone()
        return orjson.loads(row[0]) if row else None

    def list_collections(self) -> list[dict[str, Any]]:
        with self._connection(write=False) as con:
            rows = con.execute("SELECT content FROM collections ORDER BY id").fetchall()
        return [orjson.loads(row[0]) for row in rows]

    def batch_writer(self, method: LoadMethod) -> _DuckDBBatchWriter:
        return _DuckDBBatchWriter(self, method)

    def get_item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        with self._connection(write=False) as con:
            row = con.execute(
                "SELECT content FROM items WHERE collection = ? AND id = ?",
                [collection_id, item_id],
            ).fetchone()
        return orjson.loads(row[0]) if row else None

    def delete_item(self, collection_id: str, item_id: str) -> bool:
        with self._connection(write=True) as con:
            row = con.execute(
                "DELETE FROM items WHERE collection = ? AND id = ? RETURNING id",
                [collection_id, item_id],
            ).fetchone()
        return row is not None

    def item_ids(self, collection_id: str) -> set[str]:
        with self._connection(write=False) as con:
            rows = con.execute("SELECT id FROM items WHERE collection = ?", [collection_id])
            return {row[0] for row in rows.fetchall()}

    def collection_bbox(self, collection_id: str) -> tuple[float, ...] | None:
        with self._connection(write=False) as con:
            union = union_bbox(con.execute(_MERGED_ARCS, [collection_id]).fetchall())
        return tuple(union) if union else None

    def collection_aggregate(self, collection_id: str) -> CollectionAggregate:
        with self._connection(write=False) as con:
            count, start, end = con.execute(
                "SELECT count(*), min(start_datetime), max(end_datetime) FROM items "
                "WHERE collection = ?",
                [collection_id],
            ).fetchone() or (0, None, None)
            # Item bboxes, not envelopes: a footprint split at 180 degrees has an envelope
            # around the world, and its bbox the right side of it (west > east).
            arcs = con.execute(_MERGED_ARCS, [collection_id]).fetchall()
            # proj:code ("EPSG:32660", projection v2) or, in older items, proj:epsg.
            epsg = con.execute(
                "SELECT DISTINCT COALESCE("
                "TRY_CAST(json_extract(content, '$.properties.\"proj:epsg\"') AS INTEGER), "
                "TRY_CAST(regexp_extract(json_extract_string(content, "
                "'$.properties.\"proj:code\"'), '^EPSG:([0-9]+)$', 1) AS INTEGER)"
                ") AS code FROM items WHERE collection = ? AND code IS NOT NULL "
                "ORDER BY code",
                [collection_id],
            ).fetchall()
            tiers = con.execute(_TIER_AGGREGATE, [collection_id]).fetchall()
        union = union_bbox(arcs)
        return CollectionAggregate(
            items=count,
            bbox=tuple(union) if union else None,  # type: ignore[arg-type]
            start=_rfc3339(start),
            end=_rfc3339(end),
            epsg=tuple(row[0] for row in epsg),
            tiers={t: TierAggregate(n, int(size or 0), cls or "hot") for t, n, size, cls in tiers},
        )

    def search(
        self,
        *,
        collections: Sequence[str] | None = None,
        bbox: Bbox | None = None,
        datetime: str | None = None,
        ids: Sequence[str] | None = None,
        query: Mapping[str, Any] | None = None,
        limit: int | None = 100,
    ) -> list[dict[str, Any]]:
        box, interval, conditions = check_search(bbox, datetime, query, limit)
        if (ids is not None and not ids) or limit == 0:
            return []
        where: list[str] = ["TRUE"]
        params: list[Any] = []
        if collections:
            where.append("collection IN (SELECT unnest(?))")
            params.append(list(collections))
        if ids:
            where.append("id IN (SELECT unnest(?))")
            params.append(list(ids))
        if box:
            west, south, east, north = box
            where.append("ymax >= ? AND ymin <= ?")
            params += [south, north]
            if west <= east:
                where.append("xmax >= ? AND xmin <= ?")
                params += [west, east]
            else:  # across the antimeridian: east of west, or west of east
                where.append("(xmax >= ? OR xmin <= ?)")
                params += [west, east]
        if interval:
            # pgSTAC: datetime <= end (< when the end is exclusive) AND end_datetime >= start.
            if interval.start:
                where.append("end_datetime >= ?")
                params.append(interval.start)
            if interval.end:
                where.append(
                    "start_datetime <= ?" if interval.end_inclusive else "start_datetime < ?"
                )
                params.append(interval.end)
        for condition in conditions:
            clause, values = _duckdb_condition(condition)
            where.append(clause)
            params += values
        conditions_sql = " AND ".join(where)
        order = " ORDER BY start_datetime DESC, collection DESC, id DESC"
        try:
            with self._connection(write=False) as con:
                if box is None:
                    sql = "SELECT content FROM items WHERE " + conditions_sql + order
                    if limit is not None:
                        sql += " LIMIT ?"
                        params.append(limit)
                    return [orjson.loads(row[0]) for row in con.execute(sql, params).fetchall()]
                # Candidates are sorted without their JSON (sorting ~3 KB a row made a
                # search over 20,000 candidates take 0.7 s instead of 0.05 s); the exact
                # test picks the matches, whose JSON is read afterwards.
                cursor = con.execute(
                    "SELECT rowid, geometry, xmin, ymin, xmax, ymax FROM items WHERE "
                    + conditions_sql
                    + order,
                    params,
                )
                matched = _matching(cursor, BoxMatcher(box), limit)
                return _contents(con, matched, conditions_sql, params)
        except duckdb.ConversionException as e:
            raise InvalidInputError("query", str(e)) from e


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _matching(
    cursor: duckdb.DuckDBPyConnection, matcher: BoxMatcher, limit: int | None
) -> list[int]:
    """Row ids of the candidates, in order, whose geometry intersects the box, up to ``limit``."""
    found: list[int] = []
    chunk = 1024 if limit is None else max(2 * limit, 32)
    while rows := cursor.fetchmany(chunk):
        for rowid, wkb, xmin, ymin, xmax, ymax in rows:
            if matcher.matches(wkb, (xmin, ymin, xmax, ymax)):
                found.append(rowid)
                if limit is not None and len(found) >= limit:
                    return found
    return found


# Up to this many rows are read by id; more, by the search's own filter again (DuckDB
# converts list parameters element by element).
_READ_BY_ID = 1000


def _contents(
    con: duckdb.DuckDBPyConnection, rowids: list[int], conditions_sql: str, params: list[Any]
) -> list[dict[str, Any]]:
    """The items of ``rowids``, in that order."""
    if not rowids:
        return []
    if len(rowids) <= _READ_BY_ID:
        rows = con.execute(
            "SELECT rowid, content FROM items WHERE rowid IN (SELECT unnest(?::BIGINT[]))",
            [rowids],
        ).fetchall()
    else:
        rows = con.execute(
            "SELECT rowid, content FROM items WHERE " + conditions_sql, params
        ).fetchall()
    contents = dict(rows)
    return [orjson.loads(contents[rowid]) for rowid in rowids]


def _applied_migrations(con: duckdb.DuckDBPyConnection, *, create: bool) -> set[int]:
    """Numbers of the migrations the file has; ``create`` starts the record if missing."""
    tables = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "schema_migrations" in tables:
        return {row[0] for row in con.execute("SELECT version FROM schema_migrations").fetchall()}
    # A catalog made before migrations were recorded has the tables of 001.
    applied = {1} if "items" in tables else set()
    if create:
        con.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ)"
        )
        for number in applied:
            con.execute("INSERT INTO schema_migrations VALUES (?, now())", [number])
    return applied


class _DuckDBBatchWriter:
    """Items become columns (prepare), which one SQL statement writes (write).

    A load keeps one connection for all its batches, a transaction each, and
    checkpoints once when it closes: a checkpoint rewrites the whole primary-key
    index, so one per batch made each batch slower than the one before.
    """

    def __init__(self, catalog: DuckDBCatalog, method: LoadMethod) -> None:
        self.catalog = catalog
        self.method = method
        self._con: duckdb.DuckDBPyConnection | None = None

    def prepare(self, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], _Columns]:
        return items, _item_columns(items)

    def write(self, prepared: tuple[list[dict[str, Any]], _Columns]) -> LoadResult:
        if self._con is None:
            self._con = self.catalog._open(write=True)
            # The WAL may grow past DuckDB's 16 MB default until the load ends.
            self._con.execute("SET checkpoint_threshold = '4GB'")
        with self.catalog._transaction(self._con):
            return self._write(self._con, *prepared)

    def close(self) -> None:
        if self._con is not None:
            con, self._con = self._con, None
            self.catalog._close(con, write=True)

    def _write(
        self, con: duckdb.DuckDBPyConnection, items: list[dict[str, Any]], columns: _Columns
    ) -> LoadResult:
        _check_collections(con, items)
        with _batch_table(con, columns):
            existing = {
                (collection, item_id)
                for collection, item_id in con.execute(
                    "SELECT i.collection, i.id FROM items i SEMI JOIN batch b "
                    "ON i.collection = b.collection AND i.id = b.id"
                ).fetchall()
            }
            if existing and self.method == "insert":
                # The first in the caller's order, not the database's.
                first = next(i for i in items if (i["collection"], i["id"]) in existing)
                raise InvalidInputError(
                    item_name(first),
                    f"already exists in collection {first['collection']!r} (method insert)",
                )
            insert = _INSERT_BATCH
            if existing and self.method == "ignore":
                insert = _INSERT_BATCH_NEW_ONLY
            elif existing:
                # upsert and delsert alike: the stored copy goes, the new one comes.
                con.execute(
                    "DELETE FROM items WHERE (collection, id) IN (SELECT collection, id FROM batch)"
                )
            con.execute(insert)
        skipped = len(existing) if self.method == "ignore" else 0
        return LoadResult(loaded=len(items) - skipped, skipped=skipped)


_Columns = dict[str, list[Any]]
_COLUMN_TYPES = {
    "collection": "VARCHAR",
    "id": "VARCHAR",
    "datetime": "TIMESTAMPTZ",
    "start_datetime": "TIMESTAMPTZ",
    "end_datetime": "TIMESTAMPTZ",
    "xmin": "DOUBLE",
    "ymin": "DOUBLE",
    "xmax": "DOUBLE",
    "ymax": "DOUBLE",
    "geometry": "BLOB",
    "content": "VARCHAR",
    "bbox": "DOUBLE[]",
}
# Assets of every item of a collection, by tier: the JSON is read in the database.
# Item bboxes (2D or 3D) merged into a few longitude arcs by DuckDB.
_MERGED_ARCS = (
    """
    WITH bboxes AS (
        SELECT bbox AS b FROM items WHERE collection = ?
    ),
    boxes AS (
        SELECT b[1] AS w, b[2] AS s, b[len(b) // 2 + 1] AS e, b[len(b) // 2 + 2] AS n
        FROM bboxes WHERE b IS NOT NULL
    ),
    """
    + MERGED_ARCS_SQL
)

_TIER_AGGREGATE = """
    SELECT json_extract_string(asset.value, '$."geo_platform:tier"') AS tier, count(*),
           sum(TRY_CAST(json_extract(asset.value, '$."file:size"') AS BIGINT)),
           any_value(json_extract_string(asset.value, '$."geo_platform:storage_class"'))
    FROM items, json_each(items.content, '$.assets') AS asset
    WHERE items.collection = ? AND tier IS NOT NULL
    GROUP BY tier
"""


def _rfc3339(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# Statements assembled once from the column list above; no value is ever interpolated.
_COLUMN_LIST = ", ".join(_COLUMN_TYPES)
_SMALL_BATCH = "CREATE TEMP TABLE batch AS SELECT " + ", ".join(
    f"unnest(?::{kind}[]) AS {column}" for column, kind in _COLUMN_TYPES.items()
)
_INSERT_INTO = "INSERT INTO items (" + _COLUMN_LIST + ", updated_at) SELECT " + _COLUMN_LIST
_INSERT_BATCH = _INSERT_INTO + ", now() FROM batch"
_INSERT_BATCH_NEW_ONLY = _INSERT_INTO + ", now() FROM batch ANTI JOIN items USING (collection, id)"


@contextmanager
def _batch_table(con: duckdb.DuckDBPyConnection, columns: _Columns) -> Iterator[None]:
    """The batch as a relation called ``batch`` for the statements in the block."""
    if len(columns["id"]) >= _ARROW_MIN_ITEMS:
        import pyarrow as pa

        con.register("batch", pa.table(columns))
        try:
            yield
        finally:
            con.unregister("batch")
        return
    # A few items: list parameters zipped by unnest, which spares pyarrow's import
    # (DuckDB converts list parameters element by element: slow in bulk).
    con.execute(_SMALL_BATCH, list(columns.values()))
    try:
        yield
    finally:
        con.execute("DROP TABLE batch")


def _check_collections(con: duckdb.DuckDBPyConnection, items: list[dict[str, Any]]) -> None:
    known = {row[0] for row in con.execute("SELECT id FROM collections").fetchall()}
    for item in items:
        if item["collection"] not in known:
            raise InvalidInputError(item_name(item), f"unknown collection {item['collection']!r}")


def _item_columns(items: list[dict[str, Any]]) -> _Columns:
    """The rows of a batch, column by column; raises InvalidInputError naming the first
    item whose geometry cannot be stored."""
    geometries = item_geometries(items)
    columns: _Columns = {name: [] for name in _COLUMN_TYPES}
    for item, geometry in zip(items, geometries, strict=True):
        start, end = item_time_span(item)
        columns["collection"].append(item["collection"])
        columns["id"].append(item["id"])
        columns["datetime"].append(_instant(item))
        columns["start_datetime"].append(start)
        columns["end_datetime"].append(end)
        for name, value in zip(("xmin", "ymin", "xmax", "ymax"), geometry.bounds, strict=True):
            columns[name].append(value)
        columns["geometry"].append(geometry.wkb)
        columns["content"].append(orjson.dumps(item).decode())
        bbox = item.get("bbox")
        columns["bbox"].append([float(v) for v in bbox] if isinstance(bbox, list) else None)
    return columns


def _instant(item: dict[str, Any]) -> dt.datetime | None:
    # Informational only (search uses the span): a range item's datetime may be null.
    try:
        return parse_timestamp(item["properties"]["datetime"])
    except (KeyError, TypeError, ValueError):
        return None


# The expression each operand is read through, as pgSTAC's wrappers read it.
_DUCKDB_OPERAND = {
    ("column", "id"): "id",
    ("column", "collection"): "collection",
    ("column", "datetime"): "start_datetime",
    ("column", "end_datetime"): "end_datetime",
    ("json", True): "TRY_CAST(json_extract_string(content, ?) AS DOUBLE)",
    ("json", False): "json_extract_string(content, ?)",
}


def _duckdb_condition(condition: PropertyCondition) -> tuple[str, list[Any]]:
    """SQL and parameters for one query condition; names go in as a JSON path parameter."""
    params: list[Any] = []
    if condition.column:
        operand = _DUCKDB_OPERAND[("column", condition.column)]
    else:
        operand = _DUCKDB_OPERAND[("json", condition.numeric)]
        # Quoted path members: a ':' or '-' in a name is then a plain character.
        params.append("$" + "".join(f'."{key}"' for key in condition.keys))
    if condition.op == "in":
        return operand + " IN (SELECT unnest(?))", [*params, list(condition.values)]
    return operand + " " + QUERY_OPERATORS[condition.op] + " ?", [*params, condition.values[0]]
