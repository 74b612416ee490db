"""STAC catalogs: the interface, and the rules every backend shares.

pgSTAC is the reference for every semantic here (load methods, datetime ranges,
geometry intersection, the "query" extension, sort order): the embedded catalog
(``duckdb_catalog``) answers a search with the same items in the same order as
pgSTAC (``pgstac_catalog``) would. Plain classes, no Dagster: the ``stac`` commands
import only what their backend needs, and ``stac_catalog_resources`` hands them to
assets.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, get_args

import orjson

from geo_platform.errors import InvalidInputError

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


@dataclass(kw_only=True, frozen=True)
class StacCatalog(ABC):
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
    def batch_writer(self, method: LoadMethod) -> BatchWriter:
        """What writes batches of checked items, unique by (collection, id), with ``method``."""

    def loader(self, method: LoadMethod = "upsert") -> ItemLoader:
        """A bulk load in batches: ``with catalog.loader(m) as load: load.add(batch)``."""
        return ItemLoader(self, method)

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
        checked = isinstance(items, Sequence)
        if checked:
            check_items(items)
        with self.loader(method) as load:
            for batch in batched(items, self.batch_size):
                load.add(batch, checked=checked)
        return load.result

    def upsert_items(self, items: Sequence[dict[str, Any]]) -> int:
        """Create or replace items (their collections must exist); returns how many."""
        return self.load_items(items, "upsert").loaded


class BatchWriter(Protocol):
    """A backend's two halves of loading a batch.

    ``prepare`` is the Python work on a batch (formatting rows) and runs in the
    caller's thread; ``write`` is one transaction, mostly the database's work, and
    runs in the loader's writer thread. Each batch is prepared while the one before
    it is written.
    """

    def prepare(self, items: list[dict[str, Any]]) -> Any:
        """The batch made ready to write; raises InvalidInputError for an item the
        backend refuses."""
        ...

    def write(self, prepared: Any) -> LoadResult:
        """Write one prepared batch in one transaction, whole or not at all."""
        ...


class ItemLoader:
    """Loads batches of items into a catalog, one transaction a batch, in order.

    While a batch is written (one writer thread, one batch in flight) the next one
    is checked and prepared, so the database and Python work at the same time; at
    most two batches are held. The batches are written one after the other, as if
    loaded by separate calls. ``result`` counts the batches written so far; when
    ``add`` or leaving the ``with`` block raises, ``failed_label`` is the label of the
    batch that failed, the batches before it are written and none after it.
    """

    def __init__(self, catalog: StacCatalog, method: LoadMethod) -> None:
        self.method = check_load_method(method)
        self.result = LoadResult()
        self.failed_label: str | None = None
        self._writer = catalog.batch_writer(self.method)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stac-writer")
        self._in_flight: tuple[Future[LoadResult], str | None] | None = None

    def add(
        self, items: list[dict[str, Any]], *, checked: bool = False, label: str | None = None
    ) -> None:
        """Check (unless ``checked``) and prepare a batch, then start writing it once the
        previous batch is written. Raises that batch's error, or this one's."""
        try:
            if not checked:
                check_items(items)
            unique, superseded = unique_items(items, self.method)
            prepared = self._writer.prepare(unique) if unique else None
        except BaseException:
            self._settle()
            self.failed_label = label
            raise
        if error := self._settle():
            raise error
        if prepared is not None:
            future = self._thread.submit(self._write, prepared, superseded)
        else:
            future = Future()
            future.set_result(LoadResult(skipped=superseded))
        self._in_flight = (future, label)

    def _write(self, prepared: Any, superseded: int) -> LoadResult:
        return self._writer.write(prepared) + LoadResult(skipped=superseded)

    def _settle(self) -> BaseException | None:
        """Wait for the batch in flight: count it, or return its error."""
        if self._in_flight is None:
            return None
        future, label = self._in_flight
        self._in_flight = None
        error = future.exception()
        if error is None:
            self.result += future.result()
        else:
            self.failed_label = label
        return error

    def __enter__(self) -> ItemLoader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            # After an error elsewhere the batch in flight still finishes (a transaction
            # is never cut off) and counts, but its own error does not hide that one.
            failure = self._settle()
            if failure is not None and error is None:
                raise failure
        finally:
            self._thread.shutdown(wait=True)


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
            raise InvalidInputError(item_name(item), problem)


def item_name(item: Any) -> str:
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
            item_name(item), "has neither datetime nor start_datetime/end_datetime"
        )
    span = _parse_item_ts(item, start), _parse_item_ts(item, end)
    if span[0] > span[1]:
        raise InvalidInputError(item_name(item), "has start_datetime after end_datetime")
    return span


def _parse_item_ts(item: dict[str, Any], value: Any) -> dt.datetime:
    try:
        return parse_timestamp(value)
    except (TypeError, ValueError):
        raise InvalidInputError(
            item_name(item), f"has datetime {value!r}, which is not an RFC 3339 timestamp"
        ) from None


def parse_timestamp(text: str) -> dt.datetime:
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
        return parse_timestamp(part)
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
            converted = tuple(None if v is None else parse_timestamp(v) for v in literals)
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
