"""Decide, from a bronze listing and the previous cursor, which rasters need a run."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from geo_platform.lib.partition_keys import is_raster_key, partition_key_problem


@dataclass
class ScanCursor:
    """What a sensor remembers: the fingerprint (ETag) of every blob it has handled."""

    seen: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str | None) -> ScanCursor:
        if not text:
            return cls()
        data = json.loads(text)
        return cls(seen=dict(data.get("seen", {})), rejected=dict(data.get("rejected", {})))

    def to_json(self) -> str:
        return json.dumps({"seen": self.seen, "rejected": self.rejected}, sort_keys=True)


@dataclass
class ScanResult:
    to_run: list[tuple[str, str]]  # (blob key, etag), new or changed
    rejected: list[tuple[str, str]]  # (blob key, problem), newly seen
    deferred: int  # new or changed blobs left for a later tick
    cursor: ScanCursor


def scan(
    blobs: Iterable[tuple[str, str]],
    cursor: ScanCursor,
    *,
    max_runs: int,
    accept: Callable[[str], bool] = is_raster_key,
) -> ScanResult:
    """Compare ``(key, etag)`` pairs with the cursor; at most ``max_runs`` keys per call.

    ``accept`` says which keys this scan is about (rasters by default, vectors for the
    vector sensor).

    The new cursor is the old one merged with what this call handled, so blobs
    deferred to a later call are found again then.
    """
    merged = ScanCursor(seen=dict(cursor.seen), rejected=dict(cursor.rejected))
    to_run: list[tuple[str, str]] = []
    rejected: list[tuple[str, str]] = []
    deferred = 0
    for key, etag in blobs:
        if not accept(key) or cursor.seen.get(key) == etag:
            continue
        problem = partition_key_problem(key)
        if problem:
            if key not in cursor.rejected:
                rejected.append((key, problem))
                merged.rejected[key] = problem
            continue
        if len(to_run) >= max_runs:
            deferred += 1
            continue
        to_run.append((key, etag))
        merged.seen[key] = etag
    return ScanResult(to_run, rejected, deferred, merged)
