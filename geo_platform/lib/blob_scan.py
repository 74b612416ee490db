"""Decide, page by page of a bronze listing, which rasters are new, changed or deleted.

The state is Dagster's: the data version (ETag) last observed for each partition of
the bronze source asset, and the registered partitions. A cursor only says where the
listing resumes, so its size does not grow with the container.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from geo_platform.lib.partition_keys import blob_key_problem, is_raster_key

# Names already reported as unusable: bounded, so that a container full of bad names
# cannot grow the cursor without limit (past it, a name is reported once per pass).
_MAX_REMEMBERED_REJECTIONS = 1000


@dataclass(frozen=True)
class ListedBlob:
    key: str
    etag: str
    stored_at: dt.datetime | None


class PagedListing(Protocol):
    """A blob store's paged listing (``BlobStore.list_page``)."""

    def list_page(self, container: str, token: str | None, max_results: int) -> Any: ...


def listing(store: PagedListing, container: str, page_size: int = 5000) -> Iterator[ListedBlob]:
    """Every blob of ``container``, page after page."""
    token: str | None = None
    while True:
        page = store.list_page(container, token, page_size)
        yield from (ListedBlob(b.key, b.etag, b.stored_at) for b in page.blobs)
        if page.next_token is None:
            return
        token = page.next_token


@dataclass
class BronzeCursor:
    """Where the listing resumes: the store's page token and the last key before it."""

    token: str | None = None
    after: str = ""
    passes: int = 0
    rejected: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, text: str | None) -> BronzeCursor:
        data = json.loads(text) if text else {}
        if not isinstance(data, dict) or "seen" in data:
            # A cursor of the sensor before it paged (a map of every blob): start over.
            return cls()
        return cls(
            token=data.get("token"),
            after=data.get("after", ""),
            passes=int(data.get("passes", 0)),
            rejected=list(data.get("rejected", [])),
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "token": self.token,
                "after": self.after,
                "passes": self.passes,
                "rejected": self.rejected,
            },
            sort_keys=True,
        )


@dataclass
class TickPlan:
    changed: list[tuple[str, str]]  # (key, etag): new or changed, to observe and run
    rejected: list[tuple[str, str]]  # (key, problem): newly seen names Dagster cannot use
    deleted: list[str]  # registered partitions whose blob is gone
    unsettled: int  # blobs stored too recently, left for a later tick
    cursor: BronzeCursor


def plan_page(
    blobs: Sequence[ListedBlob],
    next_token: str | None,
    cursor: BronzeCursor,
    *,
    observed: Mapping[str, str],
    registered: Sequence[str],
    now: dt.datetime,
    settle: dt.timedelta,
    max_changes: int,
    accept: Callable[[str], bool] = is_raster_key,
) -> TickPlan:
    """What one page of the listing asks for.

    ``observed``: the last observed ETag of the page's keys; ``registered``: every
    registered partition key, sorted. A blob stored less than ``settle`` ago is left for
    later: an ingest that uploaded it records its observation within that time, so the
    sensor never runs a version someone else is running. At most ``max_changes``
    versions are handed out; when there are more, the cursor stays on this page.
    ``accept`` says which keys this plan is about (rasters by default, vectors for the
    vector sensor).
    """
    rejected_before = set(cursor.rejected)
    changed: list[tuple[str, str]] = []
    rejected: list[tuple[str, str]] = []
    listed: set[str] = set()
    unsettled = 0
    capped = False
    for blob in blobs:
        if not accept(blob.key):
            continue
        problem = blob_key_problem(blob.key)
        if problem:
            if blob.key not in rejected_before:
                rejected.append((blob.key, problem))
            continue
        listed.add(blob.key)
        if observed.get(blob.key) == blob.etag:
            continue
        if blob.stored_at is not None and now - blob.stored_at < settle:
            unsettled += 1
        elif len(changed) < max_changes:
            changed.append((blob.key, blob.etag))
        else:
            capped = True
    # This page covers the keys after the previous page's last one, up to its own last
    # one (or to the end of the container): a registered key in that span that was not
    # listed has been deleted.
    high = blobs[-1].key if blobs and next_token else None
    start = bisect.bisect_right(registered, cursor.after) if cursor.after else 0
    stop = bisect.bisect_right(registered, high) if high is not None else len(registered)
    deleted = [key for key in registered[start:stop] if key not in listed]
    remembered = (cursor.rejected + [key for key, _ in rejected])[-_MAX_REMEMBERED_REJECTIONS:]
    if capped:
        following = BronzeCursor(cursor.token, cursor.after, cursor.passes, remembered)
    elif next_token is None:
        following = BronzeCursor(None, "", cursor.passes + 1, remembered)
    else:
        following = BronzeCursor(next_token, blobs[-1].key, cursor.passes, remembered)
    return TickPlan(changed, rejected, deleted, unsettled, following)


def versions_digest(pairs: Sequence[tuple[str, str]]) -> str:
    """A short, order-independent name for a set of blob versions (for run keys)."""
    text = "\n".join(f"{key}\t{etag}" for key, etag in sorted(pairs))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
