"""Bulk loading of STAC items from NDJSON into any StacCatalog.

The file is streamed: at most one batch of items is in memory. Every line is
checked before its batch is written, so a bad line is reported and left out and
never leaves a batch half-applied.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import orjson

from geo_platform.errors import InvalidInputError
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


@dataclass
class LoadReport:
    """What :func:`load_ndjson` did with a file."""

    path: str
    method: str
    collection_id: str | None = None
    loaded: int = 0
    skipped: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        """Lines with an item handled (loaded or skipped) per second of the whole load."""
        return (self.loaded + self.skipped) / self.seconds if self.seconds else 0.0


def load_ndjson(
    catalog: NdjsonTarget,
    path: str | Path,
    *,
    method: LoadMethod = "upsert",
    batch_size: int | None = None,
    collection_path: str | Path | None = None,
) -> LoadReport:
    """Load the items of an NDJSON file (one item a line) into ``catalog``.

    ``collection_path``, a collection JSON file, is created or replaced first.
    Lines that are not JSON, items without id, collection, geometry or datetime, and
    items of a collection the catalog does not have are rejected (in the report) and
    the rest loaded with ``method``, ``batch_size`` items a call (default: the
    catalog's batch size). A conflict only the catalog can see (``insert`` of an id
    it already has) raises InvalidInputError; the batch it was in is not applied,
    earlier batches are.
    """
    method = check_load_method(method)
    size = batch_size or catalog.batch_size
    started = time.perf_counter()
    report = LoadReport(path=str(path), method=method)
    if collection_path is not None:
        report.collection_id = _load_collection(catalog, Path(collection_path))
    loader = ItemLoader(catalog, method)
    try:
        with _gc_paused(), loader:
            _read_into(loader, catalog, Path(path), size, report)
    except InvalidInputError as e:
        if loader.failed_label is None:
            raise
        raise InvalidInputError(
            f"{report.path} {loader.failed_label}, {e.source}",
            f"{e.problem}; none of these lines were loaded, "
            f"{loader.result.loaded} earlier items were",
        ) from e
    report.loaded, report.skipped = loader.result.loaded, loader.result.skipped
    report.seconds = time.perf_counter() - started
    return report


def _read_into(
    loader: ItemLoader, catalog: NdjsonTarget, path: Path, size: int, report: LoadReport
) -> None:
    """Parse and check each line, and hand the good items to ``loader`` by batches."""
    # Collection id -> whether the catalog has it: one lookup per collection, not per item.
    known: dict[str, bool] = {}
    batch: list[dict[str, Any]] = []
    first_line = 0
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            # The happy path first: this loop runs once per item and must stay cheap.
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                if not line.strip():
                    continue
                item, reason = _read_bad_line(line, number, e)
            else:
                reason = item_problem(item)
            if reason is None:
                collection = item["collection"]
                if collection not in known:
                    known[collection] = catalog.get_collection(collection) is not None
                if not known[collection]:
                    reason = f"unknown collection {collection!r}"
            if reason is not None:
                item_id = item.get("id") if isinstance(item, dict) else None
                report.rejected.append(
                    Rejection(number, item_id if isinstance(item_id, str) else None, reason)
                )
                continue
            if not batch:
                first_line = number
            batch.append(item)
            if len(batch) >= size:
                loader.add(batch, checked=True, label=f"lines {first_line}-{number}")
                batch = []
        if batch:
            loader.add(batch, checked=True, label=f"lines {first_line}-{number}")


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
            return item, item_problem(item)
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
