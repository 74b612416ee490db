"""Checks of STAC items, by pgSTAC's rules: what every catalog refuses alike.

pgSTAC is the reference: an item it would refuse is refused before any backend sees
it, so that both catalogs reject the same items with the same messages.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from geo_platform.errors import InvalidInputError
from geo_platform.lib.stac.geojson import geometry_problem, invalid_geometry_reasons
from geo_platform.lib.stac.search import parse_timestamp

# Longer ids or collection ids are refused: pgSTAC indexes them (a btree entry holds at
# most ~2,700 bytes, and a longer one aborts the whole batch), and no real id is this long.
MAX_ID_BYTES = 1024
# C0 and C1 control characters and DEL: PostgreSQL cannot store NUL at all, and the
# others would be printed raw by every tool that shows an id.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
# How orjson writes NUL inside a JSON string (it never writes it raw).
_ESCAPED_NUL = b"\\u0000"


def item_problem(item: Any, line: bytes | None = None) -> str | None:
    """Why ``item`` cannot be stored in any catalog, or None; ``line`` is its JSON text when
    read from a file. Cheap: runs once per loaded item. GEOS validity of the geometry is
    checked apart, a batch at a time (:func:`items_problems`)."""
    if not isinstance(item, dict):
        return "is not a JSON object"
    return (
        _identity_problem(item)
        or _geometry_problem(item)
        or _time_problem(item)
        or _nul_problem(item, line)
    )


def items_problems(items: Sequence[Any]) -> list[str | None]:
    """:func:`item_problem` of each item, then GEOS validity of the geometries of those
    without a problem, in one call."""
    problems = [item_problem(item) for item in items]
    checked = [index for index, problem in enumerate(problems) if problem is None]
    reasons = invalid_geometry_reasons([items[index]["geometry"] for index in checked])
    for index, reason in zip(checked, reasons, strict=True):
        problems[index] = reason
    return problems


def _identity_problem(item: dict[str, Any]) -> str | None:
    for key in ("id", "collection"):
        value = item.get(key)
        if not isinstance(value, str) or not value:
            return f"has no {key}"
        if control := _CONTROL.search(value):
            return f"has a control character ({control.group()!r}) in its {key}"
        if len(value) > MAX_ID_BYTES // 4 and len(value.encode()) > MAX_ID_BYTES:
            article = "an" if key == "id" else "a"
            size = len(value.encode())
            return f"has {article} {key} of {size} bytes (at most {MAX_ID_BYTES})"
    return None


def _geometry_problem(item: dict[str, Any]) -> str | None:
    geometry = item.get("geometry")
    if geometry is None:
        return "has no geometry"
    return geometry_problem(geometry)


def _nul_problem(item: dict[str, Any], line: bytes | None) -> str | None:
    # A line without the escape is settled without serializing the item again.
    if line is not None and _ESCAPED_NUL not in line:
        return None
    if _ESCAPED_NUL in orjson.dumps(item):
        return "has a NUL character (\\u0000) in a string, which PostgreSQL cannot store"
    return None


def _time_problem(item: dict[str, Any]) -> str | None:
    if not isinstance(item.get("properties"), dict):
        return "has no properties"
    try:
        item_time_span(item)
    except InvalidInputError as e:
        return e.problem
    return None


def check_items(items: Sequence[dict[str, Any]]) -> None:
    """Raise InvalidInputError naming the first item no catalog may store."""
    for item, problem in zip(items, items_problems(items), strict=True):
        if problem:
            raise InvalidInputError(item_name(item), problem)


def item_name(item: Any) -> str:
    item_id = item.get("id") if isinstance(item, dict) else None
    return f"item {item_id!r}"


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


def with_hrefs(item: dict[str, Any], rewrite: Callable[[str], str]) -> dict[str, Any]:
    """A copy of ``item`` whose asset hrefs, and the href of its collection link, are
    ``rewrite(href)``."""
    assets = {
        name: {**asset, "href": rewrite(asset["href"])} if "href" in asset else asset
        for name, asset in (item.get("assets") or {}).items()
    }
    links = [
        {**link, "href": rewrite(link["href"])}
        if link.get("rel") == "collection" and "href" in link
        else link
        for link in item.get("links") or []
    ]
    return {**item, "assets": assets, "links": links}
