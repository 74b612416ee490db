"""The embedded STAC catalog: one DuckDB file with the spatial extension."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from geo_platform.errors import InvalidInputError, TransientError
from geo_platform.lib.duckdb_spatial import load_spatial
from geo_platform.lib.stac.items import item_name, item_time_span
from geo_platform.lib.stac.loader import LoadMethod, LoadResult
from geo_platform.lib.stac.search import (
    QUERY_OPERATORS,
    Bbox,
    PropertyCondition,
    check_search,
    degenerate_bbox_geometry,
    parse_timestamp,
)
from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.sql import read_sql

# Catalog files whose schema this process has already created or checked.
_SCHEMA_READY: set[str] = set()


@dataclass(kw_only=True, frozen=True)
class DuckDBCatalog(StacCatalog):
    """The embedded catalog: one DuckDB file with the spatial extension.

    DuckDB lets one process write a file at a time, and Dagster runs steps in
    several processes: connections are short-lived, and a locked file is a
    transient error, retried with backoff.
    """

    path: str
    lock_timeout_seconds: float = 60.0

    @property
    def location(self) -> str:
        """Where the catalog is, for messages."""
        return self.path

    @contextmanager
    def _connection(
        self, *, write: bool, spatial: bool = False
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(self.path)
                break
            except duckdb.IOException as e:
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise TransientError(f"catalog {self.path} is busy: {e}") from e
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            # Loading spatial costs ~0.1 s a connection: only where geometry is touched.
            if spatial:
                load_spatial(con)
            if self.path not in _SCHEMA_READY:
                load_spatial(con)
                con.execute(read_sql("duckdb", "001_stac_catalog.sql"))
                _SCHEMA_READY.add(self.path)
            if write:
                con.execute("BEGIN")
                yield con
                con.execute("COMMIT")
            else:
                yield con
        except BaseException:
            if write:
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    def upsert_collection(self, collection: dict[str, Any]) -> None:
        if not isinstance(collection, dict) or not isinstance(collection.get("id"), str):
            raise InvalidInputError("collection", "is not a JSON object with an id")
        with self._connection(write=True) as con:
            con.execute(
                "INSERT OR REPLACE INTO collections (id, content, updated_at) VALUES (?, ?, now())",
                [collection["id"], orjson.dumps(collection).decode()],
            )

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
        if ids is not None and not ids:
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
            # The envelope test is cheap and prunes; ST_Intersects is the exact answer.
            where.append("xmax >= ? AND xmin <= ? AND ymax >= ? AND ymin <= ?")
            params += [west, east, south, north]
            degenerate = degenerate_bbox_geometry(box)
            if degenerate:
                where.append("ST_Intersects(geometry, ST_GeomFromGeoJSON(?))")
                params.append(orjson.dumps(degenerate).decode())
            else:
                where.append("ST_Intersects(geometry, ST_MakeEnvelope(?, ?, ?, ?))")
                params += [west, south, east, north]
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
        sql = (
            "SELECT content FROM items WHERE "
            + " AND ".join(where)
            + " ORDER BY start_datetime DESC, collection DESC, id DESC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        try:
            with self._connection(write=False, spatial=box is not None) as con:
                rows = con.execute(sql, params).fetchall()
        except duckdb.ConversionException as e:
            raise InvalidInputError("query", str(e)) from e
        return [orjson.loads(row[0]) for row in rows]


class _DuckDBBatchWriter:
    """Items become an Arrow table (prepare), which one SQL statement writes (write)."""

    def __init__(self, catalog: DuckDBCatalog, method: LoadMethod) -> None:
        self.catalog = catalog
        self.method = method

    def prepare(self, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], pa.Table]:
        return items, _items_table(items)

    def write(self, prepared: tuple[list[dict[str, Any]], pa.Table]) -> LoadResult:
        items, batch = prepared
        method = self.method
        with self.catalog._connection(write=True, spatial=True) as con:
            known = {row[0] for row in con.execute("SELECT id FROM collections").fetchall()}
            for item in items:
                if item["collection"] not in known:
                    raise InvalidInputError(
                        item_name(item), f"unknown collection {item['collection']!r}"
                    )
            con.register("batch", batch)
            try:
                skipped = 0
                if method in ("insert", "ignore"):
                    rows = con.execute(
                        "SELECT b.collection, b.id FROM batch b JOIN items i USING (collection, id)"
                    ).fetchall()
                    existing = set(rows)
                    if existing and method == "insert":
                        # The first in the caller's order, not the join's.
                        first = next(i for i in items if (i["collection"], i["id"]) in existing)
                        raise InvalidInputError(
                            item_name(first),
                            f"already exists in collection {first['collection']!r} (method insert)",
                        )
                    skipped = len(existing)
                if method == "delsert":
                    con.execute(
                        "DELETE FROM items WHERE (collection, id) IN "
                        "(SELECT collection, id FROM batch)"
                    )
                try:
                    con.execute(_DUCKDB_WRITE[method])
                except duckdb.Error as e:
                    culprit = _geometry_error(items)
                    if culprit:
                        raise culprit from e
                    raise
            finally:
                con.unregister("batch")
        return LoadResult(loaded=len(items) - skipped, skipped=skipped)


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


_DUCKDB_SELECT_BATCH = """
    (collection, id, datetime, start_datetime, end_datetime,
     xmin, ymin, xmax, ymax, geometry, content, updated_at)
    SELECT collection, id, datetime, start_datetime, end_datetime,
           ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g), g, content, now()
    FROM (SELECT *, ST_GeomFromGeoJSON(geometry) AS g FROM batch)
"""
# The envelope comes from the geometry, not the item's bbox: pgSTAC intersects
# geometries, and a bbox that disagrees with its geometry must not hide an item.
_DUCKDB_WRITE: dict[str, str] = {
    "insert": "INSERT INTO items" + _DUCKDB_SELECT_BATCH,
    "ignore": "INSERT OR IGNORE INTO items" + _DUCKDB_SELECT_BATCH,
    "upsert": "INSERT OR REPLACE INTO items" + _DUCKDB_SELECT_BATCH,
    "delsert": "INSERT INTO items" + _DUCKDB_SELECT_BATCH,
}


def _geometry_error(items: list[dict[str, Any]]) -> InvalidInputError | None:
    """Which item's geometry DuckDB refused, when a batch write failed on one."""
    # A connection of its own: the failed statement aborted the batch's transaction.
    with load_spatial(duckdb.connect()) as con:
        for item in items:
            try:
                con.execute(
                    "SELECT ST_GeomFromGeoJSON(?)", [orjson.dumps(item["geometry"]).decode()]
                )
            except duckdb.Error as e:
                return InvalidInputError(item_name(item), f"has an invalid geometry: {e}")
    return None


def _items_table(items: list[dict[str, Any]]) -> pa.Table:
    columns: dict[str, list[Any]] = {name: [] for name in _ITEM_COLUMNS}
    for item in items:
        start, end = item_time_span(item)
        columns["collection"].append(item["collection"])
        columns["id"].append(item["id"])
        columns["datetime"].append(_instant(item))
        columns["start_datetime"].append(start)
        columns["end_datetime"].append(end)
        columns["geometry"].append(orjson.dumps(item["geometry"]).decode())
        columns["content"].append(orjson.dumps(item).decode())
    return pa.table(
        {name: pa.array(values, type=_ITEM_COLUMNS[name]) for name, values in columns.items()}
    )


def _instant(item: dict[str, Any]) -> dt.datetime | None:
    # Informational only (search uses the span): a range item's datetime may be null.
    try:
        return parse_timestamp(item["properties"]["datetime"])
    except (KeyError, TypeError, ValueError):
        return None


_ITEM_COLUMNS = {
    "collection": pa.string(),
    "id": pa.string(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "start_datetime": pa.timestamp("us", tz="UTC"),
    "end_datetime": pa.timestamp("us", tz="UTC"),
    "geometry": pa.string(),
    "content": pa.string(),
}
