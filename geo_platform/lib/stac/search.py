"""The parameters of a STAC search, read the way pgSTAC reads them.

Datetime intervals (``parse_dtrange``), the query extension, bboxes: every catalog
checks and interprets its parameters here, so that the embedded catalog and pgSTAC
answer the same search with the same items.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from geo_platform.errors import InvalidInputError
from geo_platform.lib.stac.bbox import Bbox


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
    """A 2D bbox (W, S, E, N) of finite numbers, or InvalidInputError. A west greater than
    the east is a box across the antimeridian (RFC 7946 §5.2): longitudes then must be
    within [-180, 180]."""
    try:
        values = tuple(float(v) for v in bbox)
    except (TypeError, ValueError):
        raise InvalidInputError("bbox", f"{bbox!r} is not four numbers") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InvalidInputError("bbox", f"{bbox!r} is not four finite numbers W, S, E, N")
    west, south, east, north = values
    if south > north:
        raise InvalidInputError("bbox", f"{bbox!r} must have S <= N")
    if west > east and not (-180 <= east and west <= 180):
        raise InvalidInputError(
            "bbox", f"{bbox!r} crosses the antimeridian (W > E): longitudes must be in [-180, 180]"
        )
    return west, south, east, north


def bbox_search_geometry(bbox: Bbox) -> dict[str, Any] | None:
    """What both catalogs intersect items with when a plain box will not do, else None.

    A bbox across the antimeridian (W > E) is the two boxes on either side of 180°. A
    bbox with no area is the point or line it is: PostGIS intersects a zero-area envelope
    (an invalid polygon) inconsistently, where a point or a line gives the exact answer.
    """
    west, south, east, north = bbox
    if west > east:
        halves = [(west, south, 180.0, north), (-180.0, south, east, north)]
        if south == north:
            lines = [[[w, south], [e, south]] for w, _, e, _ in halves]
            return {"type": "MultiLineString", "coordinates": lines}
        return {"type": "MultiPolygon", "coordinates": [_box_ring(*half) for half in halves]}
    if west == east and south == north:
        return {"type": "Point", "coordinates": [west, south]}
    if west == east or south == north:
        return {"type": "LineString", "coordinates": [[west, south], [east, north]]}
    return None


def _box_ring(west: float, south: float, east: float, north: float) -> list[list[list[float]]]:
    return [[[west, south], [east, south], [east, north], [west, north], [west, south]]]


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
