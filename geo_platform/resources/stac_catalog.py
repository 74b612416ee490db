"""STAC catalogs: items and collections, loaded and searched. Embedded: a DuckDB file.

pgSTAC is the reference for every semantic here (load methods, datetime ranges,
geometry intersection, the "query" extension, sort order): the embedded catalog
answers a search with the same items in the same order as pgSTAC would.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import dagster as dg
import duckdb
import orjson
import pyarrow as pa

from geo_platform.errors import InvalidInputError, TransientError
from geo_platform.lib.duckdb_spatial import load_spatial

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
# Catalog files whose schema this process has already created or checked.
_SCHEMA_READY: set[str] = set()
Bbox = tuple[float, float, float, float]

LoadMethod = Literal["insert", "ignore", "upsert", "delsert"]
LOAD_METHODS: tuple[str, ...] = get_args(LoadMethod)
DEFAULT_BATCH_SIZE = 10_000


@dataclass(frozen=True)
class LoadResult:
    """What a load did: items written, and items left out (by ``ignore``, for an id
    already there, or a copy of an id repeated in the load that the method discards)."""

    loaded: int = 0
    skipped: int = 0

    def __add__(self, other: LoadResult) -> LoadResult:
        return LoadResult(self.loaded + other.loaded, self.skipped + other.skipped)


class StacCatalog(dg.ConfigurableResource, ABC):
    """Where STAC items and collections live.

    Items are written in batches of ``batch_size``, one transaction each: an invalid
    item or a conflict rejects its whole batch, never half of it.
    """

    batch_size: int = DEFAULT_BATCH_SIZE

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the catalog is, for messages: never a secret."""

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
    def get_item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        """An item by collection and id, or None."""

    @abstractmethod
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
        """Items matching every filter given, in pgSTAC's default order.

        ``bbox`` (W, S, E, N) intersects the item geometry; ``datetime`` is an instant,
        a date (that whole day) or a ``start/end`` range with ``..`` for an open end,
        overlapping the item's [start_datetime, end_datetime]; ``ids`` keeps those ids
        (an empty list matches nothing); ``query`` is the STAC API query extension
        (``{"gsd": {"lt": 1}}``, see :func:`parse_query`). An empty ``collections`` is
        no filter. Sorted newest first: datetime (start_datetime for a range item)
        descending, then collection and id descending. ``limit=None`` returns all.
        """

    @abstractmethod
    def _load_batch(self, items: list[dict[str, Any]], method: LoadMethod) -> LoadResult:
        """Write one batch of checked items, unique by (collection, id), in one transaction."""

    def load_items(
        self, items: Iterable[dict[str, Any]], method: LoadMethod = "upsert"
    ) -> LoadResult:
        """Load items with pgSTAC's methods; their collections must exist.

        ``insert`` fails on an id already in the collection, ``ignore`` skips it,
        ``upsert`` replaces it, ``delsert`` deletes it and inserts the new one. Within
        one call, a repeated id behaves as if the copies came one after the other.
        A list is checked whole before anything is written; another iterable is
        checked batch by batch, so batches before a bad item stay loaded.
        """
        method = check_load_method(method)
        if isinstance(items, Sequence):
            check_items(items)
        total = LoadResult()
        for batch in batched(items, self.batch_size):
            if not isinstance(items, Sequence):
                check_items(batch)
            unique, superseded = unique_items(batch, method)
            total += self._load_batch(unique, method) + LoadResult(skipped=superseded)
        return total

    def upsert_items(self, items: Sequence[dict[str, Any]]) -> int:
        """Create or replace items (their collections must exist); returns how many."""
        return self.load_items(items, "upsert").loaded


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items (the last one shorter); ``itertools.batched`` is 3.12+."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def check_load_method(method: str) -> LoadMethod:
    if method not in LOAD_METHODS:
        raise InvalidInputError("method", f"{method!r} is not one of {', '.join(LOAD_METHODS)}")
    return method  # type: ignore[return-value]


def item_problem(item: Any) -> str | None:
    """Why pgSTAC would refuse ``item``, or None. Cheap: runs once per loaded item."""
    if not isinstance(item, dict):
        return "is not a JSON object"
    return _identity_problem(item) or _geometry_problem(item) or _time_problem(item)


def _identity_problem(item: dict[str, Any]) -> str | None:
    if not isinstance(item.get("id"), str) or not item["id"]:
        return "has no id"
    if not isinstance(item.get("collection"), str) or not item["collection"]:
        return "has no collection"
    return None


def _geometry_problem(item: dict[str, Any]) -> str | None:
    geometry = item.get("geometry")
    if geometry is None:
        return "has no geometry"
    if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
        return "has a geometry that is not a GeoJSON geometry object"
    return None


def _time_problem(item: dict[str, Any]) -> str | None:
    if not isinstance(item.get("properties"), dict):
        return "has no properties"
    try:
        item_time_span(item)
    except InvalidInputError as e:
        return e.problem
    return None


def check_items(items: Iterable[dict[str, Any]]) -> None:
    """Raise InvalidInputError naming the first item pgSTAC would refuse."""
    for item in items:
        problem = item_problem(item)
        if problem:
            raise InvalidInputError(_item_name(item), problem)


def _item_name(item: Any) -> str:
    item_id = item.get("id") if isinstance(item, dict) else None
    return f"item {item_id!r}"


def unique_items(
    items: list[dict[str, Any]], method: LoadMethod
) -> tuple[list[dict[str, Any]], int]:
    """One item per (collection, id), as if repeats were loaded one after the other.

    pgSTAC itself fails on a repeat inside one batch for every method but ignore
    (ON CONFLICT cannot touch a row twice); sequential semantics instead make the
    outcome independent of where batch boundaries fall.
    """
    keys = [(item["collection"], item["id"]) for item in items]
    if len(set(keys)) == len(keys):
        return items, 0
    if method == "insert":
        seen: set[tuple[str, str]] = set()
        for key in keys:
            if key in seen:
                raise InvalidInputError(
                    f"item {key[1]!r}", f"appears twice for collection {key[0]!r} (method insert)"
                )
            seen.add(key)
    # ignore keeps the first copy; upsert and delsert end with the last one.
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for key, item in zip(keys, items, strict=True):
        if method == "ignore":
            chosen.setdefault(key, item)
        else:
            chosen.pop(key, None)
            chosen[key] = item
    return list(chosen.values()), len(items) - len(chosen)


def item_time_span(item: dict[str, Any]) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end] an item covers, by pgSTAC's rule (``stac_daterange``).

    start_datetime/end_datetime when both are set, else datetime for both ends.
    Raises InvalidInputError saying what is wrong.
    """
    props = item.get("properties") or {}
    start, end = props.get("start_datetime"), props.get("end_datetime")
    if start is None or end is None:
        start = end = props.get("datetime")
    if start is None:
        raise InvalidInputError(
            _item_name(item), "has neither datetime nor start_datetime/end_datetime"
        )
    span = _parse_item_ts(item, start), _parse_item_ts(item, end)
    if span[0] > span[1]:
        raise InvalidInputError(_item_name(item), "has start_datetime after end_datetime")
    return span


def _parse_item_ts(item: dict[str, Any], value: Any) -> dt.datetime:
    try:
        return _parse_ts(value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            _item_name(item), f"has datetime {value!r}, which is not an RFC 3339 timestamp"
        ) from None


def _parse_ts(text: str) -> dt.datetime:
    if not isinstance(text, str):
        raise TypeError(f"{text!r} is not a string")
    try:
        # Python 3.11+ reads RFC 3339's "Z" itself.
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        # RFC 3339 allows a lower-case "t" and "z", which fromisoformat refuses.
        parsed = dt.datetime.fromisoformat(text.upper())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class DatetimeInterval:
    """The time a search datetime selects: from ``start`` (inclusive, None for open)
    to ``end`` (None for open), inclusive or not."""

    start: dt.datetime | None
    end: dt.datetime | None
    end_inclusive: bool


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_datetime_interval(value: str) -> DatetimeInterval:
    """pgSTAC's reading of a search datetime (``parse_dtrange``).

    An instant is itself; a bare date alone is that whole UTC day; a bare date that
    ends a range includes its whole day; ``..`` or empty is an open end (not both).
    Durations (``P1D``) are not supported. Raises ValueError.
    """
    parts = [part.strip() for part in value.split("/")]
    if len(parts) > 2:
        raise ValueError(f"datetime {value!r} must be an instant or start/end")
    if len(parts) == 1:
        if parts[0] in ("", ".."):
            raise ValueError(f"datetime {value!r} has no instant")
        instant = _parse_search_ts(value, parts[0])
        if _DATE_ONLY.match(parts[0]):
            return DatetimeInterval(instant, instant + dt.timedelta(days=1), False)
        return DatetimeInterval(instant, instant, True)
    first, last = parts
    if first in ("", "..") and last in ("", ".."):
        raise ValueError(f"datetime range {value!r} is open at both ends")
    start = None if first in ("", "..") else _parse_search_ts(value, first)
    end: dt.datetime | None = None
    inclusive = True
    if last not in ("", ".."):
        end = _parse_search_ts(value, last)
        if _DATE_ONLY.match(last):
            end, inclusive = end + dt.timedelta(days=1), False
    if start and end and (start > end or (start == end and not inclusive)):
        raise ValueError(f"datetime range {value!r} ends before it starts")
    return DatetimeInterval(start, end, inclusive)


def _parse_search_ts(value: str, part: str) -> dt.datetime:
    if part[:1].upper() == "P":
        raise ValueError(f"datetime {value!r}: durations are not supported")
    try:
        return _parse_ts(part)
    except ValueError:
        raise ValueError(f"datetime {value!r}: {part!r} is not an RFC 3339 timestamp") from None


QUERY_OPERATORS: dict[str, str] = {
    "eq": "=",
    "neq": "<>",
    "lt": "<",
    "lte": "<=",
    "gt": ">",
    "gte": ">=",
    "in": "IN",
}
# Property names are turned into JSON paths: letters, digits and the punctuation
# STAC extensions use (eo:cloud_cover, proj:epsg, a.b for nesting); never quotes.
_PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_:\-]+(\.[A-Za-z0-9_:\-]+)*$")
# Names pgSTAC reads from a column of items rather than from the item's JSON.
_COLUMNS = {
    "id": "id",
    "collection": "collection",
    "datetime": "datetime",
    "start_datetime": "datetime",
    "end_datetime": "end_datetime",
}
# Top-level members pgSTAC addresses as they are; every other name is a property.
# "properties" itself is left after "properties." prefixes are stripped from a name.
_TOP_LEVEL = {"assets", "links", "bbox", "stac_version", "stac_extensions", "properties"}


@dataclass(frozen=True)
class PropertyCondition:
    """One comparison of the query extension, read the way pgSTAC reads it.

    ``column`` is the items column for id, collection, datetime and end_datetime
    (``datetime`` meaning the start of the item's span); otherwise ``keys`` is the
    path inside the item. ``numeric``: compared as numbers (a literal was a number),
    else as text. ``values`` are the literals, converted to that type.
    """

    name: str
    keys: tuple[str, ...]
    column: str | None
    op: str
    values: tuple[Any, ...]
    numeric: bool


def parse_query(query: Mapping[str, Any]) -> list[PropertyCondition]:
    """Check and read a STAC API ``query``: ``{"name": {"op": value, ...}, ...}``.

    Operators: eq, neq, lt, lte, gt, gte, in (a list). A bare value means eq. As in
    pgSTAC without registered queryables, a comparison is numeric when any of its
    literals is a number, and textual otherwise. Raises InvalidInputError.
    """
    if not isinstance(query, Mapping):
        raise InvalidInputError("query", "must be an object of property names")
    conditions = []
    for name, ops in query.items():
        if not isinstance(name, str) or not _PROPERTY_NAME.match(name):
            raise InvalidInputError(
                "query", f"property name {name!r} must be letters, digits, '_', ':', '-' or '.'"
            )
        stripped = re.sub(r"^(properties\.)+", "", name)
        if stripped == "geometry":
            raise InvalidInputError("query", "filter geometry with bbox")
        comparisons = ops if isinstance(ops, Mapping) else {"eq": ops}
        for op, value in comparisons.items():
            conditions.append(_condition(name, stripped, op, value))
    return conditions


def _condition(name: str, stripped: str, op: str, value: Any) -> PropertyCondition:
    if op not in QUERY_OPERATORS:
        raise InvalidInputError(
            "query", f"operator {op!r} on {name!r} is not one of {', '.join(QUERY_OPERATORS)}"
        )
    if op == "in":
        if not isinstance(value, list) or not value:
            raise InvalidInputError("query", f"'in' on {name!r} takes a non-empty list")
        literals = tuple(value)
    else:
        literals = (value,)
    if any(isinstance(v, (list, dict)) for v in literals):
        raise InvalidInputError("query", f"{name!r} {op}: compare with numbers or strings")
    column = _COLUMNS.get(stripped)
    keys = tuple(stripped.split("."))
    if keys[0] in _TOP_LEVEL:
        # pgSTAC reads those from its dehydrated copy of the item, where values shared
        # with the collection (item_assets) are missing: answers would differ.
        raise InvalidInputError(
            "query", f"{name!r}: query filters item properties, id and collection only"
        )
    keys = ("properties", *keys)
    numeric = column is None and any(_is_number(v) for v in literals)
    converted: tuple[Any, ...]
    try:
        if column in ("datetime", "end_datetime"):
            converted = tuple(None if v is None else _parse_ts(v) for v in literals)
        elif numeric:
            converted = tuple(None if v is None else _to_float(v) for v in literals)
        else:
            converted = tuple(_to_text(v) for v in literals)
    except (TypeError, ValueError) as e:
        raise InvalidInputError("query", f"{name!r} {op} {value!r}: {e}") from None
    return PropertyCondition(name, keys, column, op, converted, numeric)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _to_float(value: Any) -> float:
    # pgSTAC's to_float reads a JSON string as a number too; a boolean it refuses.
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _to_text(value: Any) -> str | None:
    # pgSTAC's to_text: a JSON string is itself, true/false their JSON spelling.
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def check_bbox(bbox: Sequence[float]) -> Bbox:
    """A 2D bbox (W, S, E, N) of finite numbers, or InvalidInputError."""
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InvalidInputError("bbox", f"{bbox!r} is not four numbers") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidInputError("bbox", f"{bbox!r} is not four finite numbers W, S, E, N")
    if values[0] > values[2] or values[1] > values[3]:
        raise InvalidInputError("bbox", f"{bbox!r} must have W <= E and S <= N")
    return values  # type: ignore[return-value]


def degenerate_bbox_geometry(bbox: Bbox) -> dict[str, Any] | None:
    """A bbox with no area as the GeoJSON point or line it is, else None.

    PostGIS intersects a zero-area envelope (an invalid polygon) inconsistently: a
    point bbox inside an item's polygon may miss it. As a point or a line the
    answer is exact, so both catalogs search with that instead.
    """
    west, south, east, north = bbox
    if west == east and south == north:
        return {"type": "Point", "coordinates": [west, south]}
    if west == east or south == north:
        return {"type": "LineString", "coordinates": [[west, south], [east, north]]}
    return None


def check_search(
    bbox: Sequence[float] | None,
    datetime: str | None,
    query: Mapping[str, Any] | None,
    limit: int | None,
) -> tuple[Bbox | None, DatetimeInterval | None, list[PropertyCondition]]:
    """The parameters of a search, checked alike for every backend."""
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise InvalidInputError("limit", f"{limit!r} must be a non-negative integer or None")
    interval = None
    if datetime:
        try:
            interval = parse_datetime_interval(datetime)
        except ValueError as e:
            raise InvalidInputError("datetime", str(e)) from None
    return (
        check_bbox(bbox) if bbox is not None else None,
        interval,
        parse_query(query) if query else [],
    )


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

    def _load_batch(self, items: list[dict[str, Any]], method: LoadMethod) -> LoadResult:
        batch = _items_table(items)
        with self._connection(write=True, spatial=True) as con:
            known = {row[0] for row in con.execute("SELECT id FROM collections").fetchall()}
            for item in items:
                if item["collection"] not in known:
                    raise InvalidInputError(
                        _item_name(item), f"unknown collection {item['collection']!r}"
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
                            _item_name(first),
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
                return InvalidInputError(_item_name(item), f"has an invalid geometry: {e}")
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
        return _parse_ts(item["properties"]["datetime"])
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
