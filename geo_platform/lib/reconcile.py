"""Compare bronze with what the platform made of it: what to run, what to remove.

The sensor looks at one page of bronze per tick and trusts what was observed; the
reconciliation looks at everything at once and trusts only results: a blob version
counts as done when a validation was made from it and its item is in the catalog, or
when it failed as invalid input. It is the platform's scheduled backfill, catching
whatever a tick missed or a crashed run left undone.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from geo_platform.lib.blob_scan import ListedBlob
from geo_platform.lib.partition_keys import blob_key_problem, is_raster_key
from geo_platform.lib.stac.ids import collection_id, item_id


@dataclass(frozen=True)
class RasterState:
    """What Dagster recorded, by partition key: the blob version each latest validation
    was made from, and versions that failed as invalid input."""

    materialized: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    # The collection settings each latest validation was made with (RasterOptions.made_with).
    made_with: dict[str, str] = field(default_factory=dict)


@dataclass
class ReconcilePlan:
    to_run: list[tuple[str, str]] = field(default_factory=list)  # (key, etag)
    reasons: dict[str, str] = field(default_factory=dict)  # key -> why it runs
    to_remove: list[str] = field(default_factory=list)
    unchanged: int = 0
    failed_before: int = 0
    unsettled: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        reasons = Counter(self.reasons.values())
        return {
            **{f"run ({reason})": count for reason, count in sorted(reasons.items())},
            "remove (deleted from bronze)": len(self.to_remove),
            "unchanged": self.unchanged,
            "left alone (failed before as invalid)": self.failed_before,
            "settling (stored under a minute ago)": self.unsettled,
            "unusable names": len(self.rejected),
        }


def plan_reconcile(
    blobs: Iterable[ListedBlob],
    registered: Sequence[str],
    state: RasterState,
    cataloged: Callable[[str], set[str]],
    *,
    now: dt.datetime,
    settle: dt.timedelta,
    collection: str | None = None,
    made_with: Callable[[str], str] = lambda collection: "",
) -> ReconcilePlan:
    """What to do so that the platform matches bronze (one collection, or all).

    ``cataloged(collection)`` gives the item ids a collection has in the catalog;
    ``made_with(collection)`` what its settings are now (a raster made with others, a
    former target CRS say, runs again).
    """
    plan = ReconcilePlan()
    prefix = f"{collection}/" if collection else ""
    listed: set[str] = set()
    items: dict[str, set[str]] = {}
    for blob in blobs:
        if not blob.key.startswith(prefix) or not is_raster_key(blob.key):
            continue
        if problem := blob_key_problem(blob.key):
            plan.rejected.append((blob.key, problem))
            continue
        listed.add(blob.key)
        reason = _reason(blob, state, items, cataloged, made_with)
        if reason is None:
            plan.unchanged += 1
        elif reason == "failed":
            plan.failed_before += 1
        elif blob.stored_at is not None and now - blob.stored_at < settle:
            plan.unsettled += 1
        else:
            plan.to_run.append((blob.key, blob.etag))
            plan.reasons[blob.key] = reason
    plan.to_remove = [k for k in registered if k.startswith(prefix) and k not in listed]
    return plan


def _reason(
    blob: ListedBlob,
    state: RasterState,
    items: dict[str, set[str]],
    cataloged: Callable[[str], set[str]],
    made_with: Callable[[str], str],
) -> str | None:
    made_from = state.materialized.get(blob.key)
    if made_from == blob.etag:
        collection = collection_id(blob.key)
        if state.made_with.get(blob.key, "") != made_with(collection):
            return "collection settings changed"
        if collection not in items:
            items[collection] = cataloged(collection)
        return None if item_id(blob.key) in items[collection] else "item missing"
    if state.failed.get(blob.key) == blob.etag:
        return "failed"
    return "new" if made_from is None else "changed"
