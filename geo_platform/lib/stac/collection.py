"""STAC collections: a new one for a first item, and extent and summaries kept current."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pystac

from geo_platform.settings import PriceSettings


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


def summarize_collection(
    base: dict[str, Any], items: Iterable[dict[str, Any]], prices: PriceSettings
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The collection with extent and summaries from its items, and a storage report.

    The report has, per tier, the number of items, bytes and cost per month.
    """
    bboxes: list[list[float]] = []
    times: list[str] = []
    epsg: Counter[int | None] = Counter()
    tiers: dict[str, dict[str, float]] = defaultdict(lambda: {"items": 0, "bytes": 0, "cost": 0.0})
    count = 0
    for item in items:
        count += 1
        bbox = item["bbox"]
        bboxes.append(bbox if len(bbox) == 4 else [bbox[0], bbox[1], bbox[3], bbox[4]])
        props = item["properties"]
        for name in ("datetime", "start_datetime", "end_datetime"):
            if props.get(name):
                times.append(props[name])
        if props.get("proj:epsg"):
            epsg[props["proj:epsg"]] += 1
        for asset in item.get("assets", {}).values():
            tier = asset.get("geo_platform:tier")
            if tier:
                size = int(asset.get("file:size", 0))
                tiers[tier]["items"] += 1
                tiers[tier]["bytes"] += size
                tiers[tier]["cost"] += prices.monthly_cost(
                    size, asset.get("geo_platform:storage_class", "hot")
                )
    collection = dict(base)
    if count:
        union = [
            min(b[0] for b in bboxes),
            min(b[1] for b in bboxes),
            max(b[2] for b in bboxes),
            max(b[3] for b in bboxes),
        ]
        times.sort()
        collection["extent"] = {
            "spatial": {"bbox": [union]},
            "temporal": {"interval": [[times[0], times[-1]]]},
        }
    collection["summaries"] = {
        **(base.get("summaries") or {}),
        "geo_platform:tiers": sorted(tiers),
        **({"proj:epsg": sorted(epsg)} if epsg else {}),
    }
    report = {
        "items": count,
        "tiers": {
            name: {
                "items": int(v["items"]),
                "bytes": int(v["bytes"]),
                f"cost_per_month_{prices.currency.lower()}": v["cost"],
            }
            for name, v in sorted(tiers.items())
        },
    }
    return collection, report


def extend_collection(
    collection: dict[str, Any], items: Iterable[dict[str, Any]]
) -> dict[str, Any]:
    """The collection with its extent and summaries grown to cover ``items``.

    Applied as items are written, so that a collection is current without re-reading
    its items; ``summarize_collection`` recomputes it whole (items that left included).
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
        union = bboxes[0]
        start = end = times[0] if times else None
    else:
        union = collection["extent"]["spatial"]["bbox"][0]
        start, end = collection["extent"]["temporal"]["interval"][0]
    for bbox in bboxes:
        union = [
            min(union[0], bbox[0]),
            min(union[1], bbox[1]),
            max(union[2], bbox[2]),
            max(union[3], bbox[3]),
        ]
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
        if item["properties"].get("proj:epsg"):
            epsg.add(item["properties"]["proj:epsg"])
    summaries["geo_platform:tiers"] = sorted(tiers)
    if epsg:
        summaries["proj:epsg"] = sorted(epsg)
    extended["summaries"] = summaries
    return extended


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
