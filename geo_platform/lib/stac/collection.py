"""STAC collections: a new one for a first item, and extent and summaries kept current."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pystac

from geo_platform.lib.stac.bbox import union_bbox
from geo_platform.settings import PriceSettings

# Each collection's document is published as a blob, where its items' collection link
# points: a STAC client resolves it without the catalog's database.
COLLECTION_DOCUMENTS_CONTAINER = "gold"


def collection_document_key(collection_id: str) -> str:
    """``landsat`` -> ``stac/landsat/collection.json`` (the static-catalog layout)."""
    return f"stac/{collection_id}/collection.json"


def collection_document(collection: dict[str, Any], href: str) -> dict[str, Any]:
    """The published copy of a collection: the catalog's, with a self link at ``href``."""
    links = [link for link in collection.get("links") or [] if link.get("rel") != "self"]
    links.append({"rel": "self", "href": href, "type": "application/json"})
    return {**collection, "links": links}


def new_collection(collection_id: str) -> dict[str, Any]:
    """A minimal valid collection, so that items can be loaded before any summary exists."""
    return {
        "type": "Collection",
        "stac_version": pystac.get_stac_version(),
        "stac_extensions": [],
        "id": collection_id,
        "description": f"Rasters ingested into geo_platform under {collection_id}/",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[None, None]]},
        },
        "links": [],
    }


def extend_collection(
    collection: dict[str, Any], items: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    """The collection with its extent and summaries grown to cover ``items``.

    Applied as items are written, so that a collection is current without re-reading
    its items; ``summary_from_aggregate`` recomputes it whole (items that left included).
    """
    items = list(items)
    if not items:
        return collection
    extended = dict(collection)
    summaries = dict(extended.get("summaries") or {})
    bboxes = [_bbox_2d(item["bbox"]) for item in items]
    times = sorted(
        value
        for item in items
        for name in ("datetime", "start_datetime", "end_datetime")
        if (value := item["properties"].get(name))
    )
    if _is_placeholder(collection):
        start = end = times[0] if times else None
    else:
        bboxes.append(collection["extent"]["spatial"]["bbox"][0])
        start, end = collection["extent"]["temporal"]["interval"][0]
    # On the globe: a union that is shorter across 180 degrees crosses it (west > east).
    union = union_bbox(bboxes)
    if times:
        start = min(filter(None, (start, times[0])))
        end = max(filter(None, (end, times[-1])))
    extended["extent"] = {"spatial": {"bbox": [union]}, "temporal": {"interval": [[start, end]]}}
    tiers = set(summaries.get("geo_platform:tiers", []))
    epsg = set(summaries.get("proj:epsg", []))
    for item in items:
        tiers.update(
            tier
            for asset in item.get("assets", {}).values()
            if (tier := asset.get("geo_platform:tier"))
        )
        if code := _epsg(item["properties"]):
            epsg.add(code)
    summaries["geo_platform:tiers"] = sorted(tiers)
    if epsg:
        summaries["proj:epsg"] = sorted(epsg)
    extended["summaries"] = summaries
    return extended


def _epsg(properties: dict[str, Any]) -> int | None:
    """The EPSG code of an item: ``proj:code`` (``EPSG:32660``, projection v2) or, in
    older items, ``proj:epsg``."""
    code = properties.get("proj:code")
    if isinstance(code, str) and code.startswith("EPSG:") and code[5:].isdigit():
        return int(code[5:])
    epsg = properties.get("proj:epsg")
    return epsg if isinstance(epsg, int) else None


def _bbox_2d(bbox: list[float]) -> list[float]:
    return bbox if len(bbox) == 4 else [bbox[0], bbox[1], bbox[3], bbox[4]]


def _is_placeholder(collection: dict[str, Any]) -> bool:
    """A collection whose extent is still new_collection's whole world, no items yet."""
    interval = collection.get("extent", {}).get("temporal", {}).get("interval", [[None, None]])
    return interval[0] == [None, None]


@dataclass(frozen=True)
class TierAggregate:
    items: int
    bytes: int
    storage_class: str


@dataclass(frozen=True)
class CollectionAggregate:
    """What a catalog computes over a collection's items for its summary."""

    items: int
    bbox: tuple[float, float, float, float] | None = None
    start: str | None = None
    end: str | None = None
    epsg: tuple[int, ...] = ()
    tiers: dict[str, TierAggregate] = field(default_factory=dict)


def summary_from_aggregate(
    base: dict[str, Any], aggregate: CollectionAggregate, prices: PriceSettings
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The collection with extent and summaries from ``aggregate`` (recomputed whole:
    items that left the collection no longer count), and a storage report with the
    number of items, bytes and cost per month per tier."""
    collection = dict(base)
    if aggregate.items and aggregate.bbox:
        collection["extent"] = {
            "spatial": {"bbox": [list(aggregate.bbox)]},
            "temporal": {"interval": [[aggregate.start, aggregate.end]]},
        }
    collection["summaries"] = {
        **(base.get("summaries") or {}),
        "geo_platform:tiers": sorted(aggregate.tiers),
        **({"proj:epsg": list(aggregate.epsg)} if aggregate.epsg else {}),
    }
    if not aggregate.epsg:
        collection["summaries"].pop("proj:epsg", None)
    cost_key = f"cost_per_month_{prices.currency.lower()}"
    report = {
        "items": aggregate.items,
        "tiers": {
            name: {
                "items": tier.items,
                "bytes": tier.bytes,
                cost_key: prices.monthly_cost(tier.bytes, tier.storage_class),
            }
            for name, tier in sorted(aggregate.tiers.items())
        },
    }
    return collection, report
