"""STAC catalogs: items and collections, upserted and searched. Embedded: a DuckDB file."""

from __future__ import annotations

import datetime as dt
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa

from geo_platform.errors import InvalidInputError, TransientError
from geo_platform.lib.duckdb_spatial import load_spatial

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
# Catalog files whose schema this process has already created or checked.
_SCHEMA_READY: set[str] = set()
Bbox = tuple[float, float, float, float]


class StacCatalog(dg.ConfigurableResource, ABC):
    """Where STAC items and collections live; writes are upserts."""

    @abstractmethod
    def upsert_collection(self, collection: dict[str, Any]) -> None:
        """Create or replace a collection."""

    @abstractmethod
    def get_collection(self, collection_id: str) -> dict[str, Any] | None:
        """A collection by id, or None."""

    @abstractmethod
    def list_collections(self) -> list[dict[str, Any]]:
        """Every collection, by id."""

    @abstractmethod
    def upsert_items(self, items: Sequence[dict[str, Any]]) -> int:
        """Create or replace items (their collections must exist); returns how many."""

    @abstractmethod
    def get_item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        """An item by collection and id, or None."""

    @abstractmethod
    def search(
        self,
        *,
        collections: Sequence[str] | None = None,
        bbox: Bbox | None = None,
        datetime: str | None = None,
        limit: int | None = 100,
    ) -> list[dict[str, Any]]:
        """Items intersecting ``bbox`` and the ``datetime`` instant or ``A/B`` range,
        newest first (datetime descending, then id descending, as pgSTAC sorts)."""


def parse_datetime_range(value: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """A STAC API datetime: an instant, or ``start/end`` with ``..`` or empty for open ends."""
    parts = value.split("/")
    if len(parts) > 2:
        raise ValueError(f"datetime {value!r} must be an instant or start/end")

    def one(text: str) -> dt.datetime | None:
        text = text.strip()
        if text in ("", ".."):
            return None
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)

    if len(parts) == 1:
        instant = one(parts[0])
        if instant is None:
            raise ValueError(f"datetime {value!r} has no instant")
        return instant, instant
    start, end = one(parts[0]), one(parts[1])
    if start and end and start > end:
        raise ValueError(f"datetime range {value!r} ends before it starts")
    return start, end


def item_time_span(item: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    props = item.get("properties") or {}
    instant = props.get("datetime")
    start = props.get("start_datetime") or instant
    end = props.get("end_datetime") or instant
    if not start or not end:
        raise InvalidInputError(
            f"item {item.get('id')!r}", "has neither datetime nor start_datetime/end_datetime"
        )
    return _parse_ts(start), _parse_ts(end)


def _parse_ts(text: str) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class DuckDBCatalog(StacCatalog):
    """The embedded catalog: one DuckDB file with the spatial extension.

    DuckDB lets one process write a file at a time, and Dagster runs steps in
    several processes: connections are short-lived, and a locked file is a
    transient error, retried with backoff.
    """

    path: str
    lock_timeout_seconds: float = 60.0

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
                con.execute((SQL_DIR / "duckdb" / "001_stac_catalog.sql").read_text())
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
        with self._connection(write=True) as con:
            con.execute(
                "INSERT OR REPLACE INTO collections (id, content, updated_at) VALUES (?, ?, now())",
                [collection["id"], json.dumps(collection)],
            )

    def get_collection(self, collection_id: str) -> dict[str, Any] | None:
        with self._connection(write=False) as con:
            row = con.execute(
                "SELECT content FROM collections WHERE id = ?", [collection_id]
            ).fetchone()
        return json.loads(row[0]) if row else None

    def list_collections(self) -> list[dict[str, Any]]:
        with self._connection(write=False) as con:
            rows = con.execute("SELECT content FROM collections ORDER BY id").fetchall()
        return [json.loads(row[0]) for row in rows]

    def upsert_items(self, items: Sequence[dict[str, Any]]) -> int:
        if not items:
            return 0
        batch = _items_table(items)
        with self._connection(write=True, spatial=True) as con:
            known = {row[0] for row in con.execute("SELECT id FROM collections").fetchall()}
            missing = sorted(set(batch.column("collection").to_pylist()) - known)
            if missing:
                raise InvalidInputError("items", f"unknown collection(s): {', '.join(missing)}")
            con.register("batch", batch)
            con.execute(
                """
                INSERT OR REPLACE INTO items
                    (collection, id, datetime, start_datetime, end_datetime,
                     xmin, ymin, xmax, ymax, geometry, content, updated_at)
                SELECT collection, id, datetime, start_datetime, end_datetime,
                       xmin, ymin, xmax, ymax, ST_GeomFromGeoJSON(geometry), content, now()
                FROM batch
                """
            )
            con.unregister("batch")
        return len(items)

    def get_item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        with self._connection(write=False) as con:
            row = con.execute(
                "SELECT content FROM items WHERE collection = ? AND id = ?",
                [collection_id, item_id],
            ).fetchone()
        return json.loads(row[0]) if row else None

    def search(
        self,
        *,
        collections: Sequence[str] | None = None,
        bbox: Bbox | None = None,
        datetime: str | None = None,
        limit: int | None = 100,
    ) -> list[dict[str, Any]]:
        where, params = ["TRUE"], []
        if collections:
            where.append("collection IN (SELECT unnest(?))")
            params.append(list(collections))
        if bbox:
            west, south, east, north = bbox
            # The envelope test is cheap and prunes; ST_Intersects is the exact answer.
            where.append(
                "xmax >= ? AND xmin <= ? AND ymax >= ? AND ymin <= ? "
                "AND ST_Intersects(geometry, ST_MakeEnvelope(?, ?, ?, ?))"
            )
            params += [west, east, south, north, west, south, east, north]
        if datetime:
            start, end = parse_datetime_range(datetime)
            if start:
                where.append("end_datetime >= ?")
                params.append(start)
            if end:
                where.append("start_datetime <= ?")
                params.append(end)
        query = (
            "SELECT content FROM items WHERE "
            + " AND ".join(where)
            + " ORDER BY datetime DESC NULLS LAST, id DESC"
        )
        if limit is not None:
            query += " LIMIT ?"
            params.append(int(limit))
        with self._connection(write=False, spatial=bbox is not None) as con:
            rows = con.execute(query, params).fetchall()
        return [json.loads(row[0]) for row in rows]


def _items_table(items: Sequence[dict[str, Any]]) -> pa.Table:
    columns: dict[str, list] = {name: [] for name in _ITEM_COLUMNS}
    for item in items:
        name = f"item {item.get('id')!r}"
        if not item.get("id") or not item.get("collection"):
            raise InvalidInputError(name, "needs both id and collection")
        geometry, bbox = item.get("geometry"), item.get("bbox")
        if not geometry or not bbox:
            raise InvalidInputError(name, "has no geometry or bbox")
        start, end = item_time_span(item)
        instant = (item.get("properties") or {}).get("datetime")
        columns["collection"].append(item["collection"])
        columns["id"].append(item["id"])
        columns["datetime"].append(_parse_ts(instant) if instant else None)
        columns["start_datetime"].append(start)
        columns["end_datetime"].append(end)
        west, east = (bbox[0], bbox[3]) if len(bbox) == 6 else (bbox[0], bbox[2])
        south, north = (bbox[1], bbox[4]) if len(bbox) == 6 else (bbox[1], bbox[3])
        columns["xmin"].append(float(west))
        columns["ymin"].append(float(south))
        columns["xmax"].append(float(east))
        columns["ymax"].append(float(north))
        columns["geometry"].append(json.dumps(geometry))
        columns["content"].append(json.dumps(item))
    return pa.table(
        {
            name: pa.array(values, type=_ITEM_COLUMNS[name])
            for name, values in columns.items()
        }
    )


_ITEM_COLUMNS = {
    "collection": pa.string(),
    "id": pa.string(),
    "datetime": pa.timestamp("us", tz="UTC"),
    "start_datetime": pa.timestamp("us", tz="UTC"),
    "end_datetime": pa.timestamp("us", tz="UTC"),
    "xmin": pa.float64(),
    "ymin": pa.float64(),
    "xmax": pa.float64(),
    "ymax": pa.float64(),
    "geometry": pa.string(),
    "content": pa.string(),
}
