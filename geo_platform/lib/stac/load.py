"""Bulk loading of STAC items from NDJSON into any StacCatalog.

The file is streamed: at most one batch of items is in memory. Every line is
checked before its batch is written, so a bad line is reported and left out and
never leaves a batch half-applied.
"""

from __future__ import annotations

import gc
import heapq
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

import orjson

from geo_platform.errors import GeoPlatformError, InvalidInputError, TransientError
from geo_platform.lib.stac.geojson import invalid_geometry_reasons
from geo_platform.lib.stac.items import item_problem
from geo_platform.lib.stac.loader import BatchTarget, ItemLoader, LoadMethod, check_load_method


class NdjsonTarget(BatchTarget, Protocol):
    """The part of a STAC catalog that loading a file needs."""

    @property
    def batch_size(self) -> int: ...

    def get_collection(self, collection_id: str) -> dict[str, Any] | None: ...

    def upsert_collection(self, collection: dict[str, Any]) -> None: ...


class Rejection(NamedTuple):
    """A line left out: its number (from 1), the item id if it had one, and why."""

    line: int
    item_id: str | None
    reason: str


# Rejections a report keeps (the first ones by line); the rest are only counted, so that
# a file of garbage takes no more memory than a good one.
KEPT_REJECTIONS = 50
# A longer line is rejected without being parsed (and read only to find its end).
MAX_LINE_BYTES = 64 * 1024 * 1024
# Kept ids and reasons are cut to this many characters: an id can be as long as a line.
_KEPT_TEXT = 300
# Collections looked up once and remembered, at most: more are looked up again per item.
_KNOWN_COLLECTIONS = 10_000


@dataclass
class LoadReport:
    """What :func:`load_ndjson` did with a file.

    ``rejected`` holds the first :data:`KEPT_REJECTIONS` rejected lines, by line number;
    ``rejected_count`` counts them all.
    """

    path: str
    method: str
    collection_id: str | None = None
    loaded: int = 0
    skipped: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    rejected_count: int = 0
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        """Lines with an item handled (loaded or skipped) per second of the whole load."""
        return (self.loaded + self.skipped) / self.seconds if self.seconds else 0.0


class _Rejections:
    """The first ``keep`` rejections by line number, and how many there were in all.

    Lines are rejected out of order (GEOS validity is checked a batch at a time, after
    the cheap checks of later lines), so the lowest line numbers are kept in a heap.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.count = 0
        self._heap: list[tuple[int, Rejection]] = []

    def add(self, line: int, item: Any, reason: str) -> None:
        self.count += 1
        if len(self._heap) >= self.keep and -self._heap[0][0] < line:
            return
        item_id = item.get("id") if isinstance(item, dict) else None
        rejection = Rejection(
            line, _cut(item_id) if isinstance(item_id, str) else None, _cut(reason)
        )
        if len(self._heap) < self.keep:
            heapq.heappush(self._heap, (-line, rejection))
        elif self.keep:
            heapq.heapreplace(self._heap, (-line, rejection))

    def first(self) -> list[Rejection]:
        return sorted((rejection for _, rejection in self._heap), key=attrgetter("line"))


def _cut(text: str) -> str:
    return text if len(text) <= _KEPT_TEXT else text[: _KEPT_TEXT - 3] + "..."


def load_ndjson(
    catalog: NdjsonTarget,
    path: str | Path,
    *,
    method: LoadMethod = "upsert",
    batch_size: int | None = None,
    collection_path: str | Path | None = None,
) -> LoadReport:
    """Load the items of an NDJSON file (one item a line) into ``catalog``.

    ``collection_path``, a collection JSON file, is created or replaced first. Every
    line is checked before its batch is written, by the same rules whatever the catalog
    (:func:`item_problem`, and the geometry rules of :mod:`geojson`): lines that are not
    JSON or longer than :data:`MAX_LINE_BYTES`, items that break a rule and items of a
    collection the catalog does not have are rejected alone (in the report), and the rest
    loaded with ``method``, ``batch_size`` items a call (default: the catalog's batch
    size). A conflict only the catalog can see (``insert`` of an id it already has)
    raises InvalidInputError; the batch it was in is not applied, earlier batches are.
    A catalog that stops answering (TransientError) ends the load with a TransientError
    saying how many items were committed before it stopped.
    """
    method = check_load_method(method)
    size = batch_size or catalog.batch_size
    started = time.perf_counter()
    report = LoadReport(path=str(path), method=method)
    if collection_path is not None:
        report.collection_id = _load_collection(catalog, Path(collection_path))
    loader = ItemLoader(catalog, method)
    rejections = _Rejections(KEPT_REJECTIONS)
    try:
        with _gc_paused(), loader:
            _read_into(loader, catalog, Path(path), size, rejections)
    except InvalidInputError as e:
        if loader.failed_label is None:
            raise
        raise InvalidInputError(
            f"{report.path} {loader.failed_label}, {e.source}",
            f"{e.problem}; none of these lines were loaded, "
            f"{loader.result.loaded} earlier items were",
        ) from e
    except GeoPlatformError as e:
        if loader.failed_label is None:
            raise
        raise TransientError(
            f"loading {report.path} stopped at {loader.failed_label}: {e}; "
            f"{loader.result.loaded} items were committed, "
            f"every good item before those lines (load the file again to finish"
            f"{', with --method ignore' if method == 'insert' else ''})"
        ) from e
    report.loaded, report.skipped = loader.result.loaded, loader.result.skipped
    report.rejected, report.rejected_count = rejections.first(), rejections.count
    report.seconds = time.perf_counter() - started
    return report


def _read_into(
    loader: ItemLoader,
    catalog: NdjsonTarget,
    path: Path,
    size: int,
    rejections: _Rejections,
) -> None:
    """Parse and check each line, and hand the good items to ``loader`` by batches."""
    # Collection id -> whether the catalog has it: one lookup per collection, not per item.
    known: dict[str, bool] = {}
    batch: list[dict[str, Any]] = []
    numbers: list[int] = []
    with open(path, "rb") as lines:
        for number, line in _numbered_lines(lines):
            if line is None:
                rejections.add(number, None, f"longer than {MAX_LINE_BYTES:,} bytes, not read")
                continue
            # The happy path first: this loop runs once per item and must stay cheap.
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                if not line.strip():
                    continue
                item, reason = _read_bad_line(line, number, e)
            else:
                reason = item_problem(item, line)
            if reason is None:
                collection = item["collection"]
                if collection in known:
                    exists = known[collection]
                else:
                    exists = catalog.get_collection(collection) is not None
                    if len(known) < _KNOWN_COLLECTIONS:
                        known[collection] = exists
                if not exists:
                    reason = f"unknown collection {collection!r}"
            if reason is not None:
                rejections.add(number, item, reason)
                continue
            batch.append(item)
            numbers.append(number)
            if len(batch) >= size:
                _add_valid(loader, batch, numbers, rejections)
                batch, numbers = [], []
        if batch:
            _add_valid(loader, batch, numbers, rejections)


def _numbered_lines(lines: BinaryIO) -> Iterator[tuple[int, bytes | None]]:
    """(number, line) of each line; None for a line over MAX_LINE_BYTES, which is never
    held in memory whole."""
    number = 0
    read = lines.readline
    while line := read(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            del line
            while (rest := read(1 << 20)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        else:
            yield number, line


def _add_valid(
    loader: ItemLoader, batch: list[dict[str, Any]], numbers: list[int], rejections: _Rejections
) -> None:
    """The items of ``batch`` whose geometry GEOS finds valid, to ``loader``; the others
    rejected by line."""
    reasons = invalid_geometry_reasons([item["geometry"] for item in batch])
    if any(reasons):
        good, good_numbers = [], []
        for item, number, reason in zip(batch, numbers, reasons, strict=True):
            if reason is None:
                good.append(item)
                good_numbers.append(number)
            else:
                rejections.add(number, item, reason)
        batch, numbers = good, good_numbers
    if batch:
        loader.add(batch, checked=True, label=f"lines {numbers[0]}-{numbers[-1]}")


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch of parsed items is held.

    A batch of 10,000 parsed items is about a million container objects, and the
    collector rescans them all every time allocations grow the heap by a quarter:
    that cost over a quarter of the load time. JSON documents hold no reference cycles, so
    reference counting frees them all the same.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _read_bad_line(
    line: bytes, number: int, error: orjson.JSONDecodeError
) -> tuple[Any, str | None]:
    """A line orjson refused: a UTF-8 byte order mark on the first, or not JSON at all."""
    if number == 1 and line.startswith(_BOM):
        try:
            item = orjson.loads(line[len(_BOM) :])
        except orjson.JSONDecodeError:
            pass
        else:
            return item, item_problem(item, line)
    return None, f"malformed JSON: {error}"


_BOM = b"\xef\xbb\xbf"


def _load_collection(catalog: NdjsonTarget, path: Path) -> str:
    try:
        collection = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as e:
        raise InvalidInputError(str(path), f"malformed JSON: {e}") from e
    if not isinstance(collection, dict) or not isinstance(collection.get("id"), str):
        raise InvalidInputError(str(path), "is not a STAC collection (an object with an id)")
    catalog.upsert_collection(collection)
    return collection["id"]
