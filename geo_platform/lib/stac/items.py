"""Checks of STAC items, by pgSTAC's rules: what every catalog refuses alike.

pgSTAC is the reference: an item it would refuse is refused before any backend sees
it, so that both catalogs reject the same items with the same messages.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

from geo_platform.errors import InvalidInputError
from geo_platform.lib.stac.search import parse_timestamp


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
