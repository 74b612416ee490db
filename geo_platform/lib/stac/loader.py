"""Loading items into a catalog in batches: load methods, repeats, double buffering.

The rules are pgSTAC's (``pypgstac load``'s methods); the catalogs supply only a
``BatchWriter`` that writes one prepared batch in one transaction.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol, get_args

from geo_platform.errors import InvalidInputError
from geo_platform.lib.stac.items import check_items

LoadMethod = Literal["insert", "ignore", "upsert", "delsert"]
LOAD_METHODS: tuple[str, ...] = get_args(LoadMethod)
DEFAULT_BATCH_SIZE = 10_000


@dataclass(frozen=True)
class LoadResult:
    """What a load did: items written, and items left out (by ``ignore``, for an id
    already there, or a copy of an id repeated in the load that the method discards)."""

    loaded: int = 0
    skipped: int = 0

    def __add__(self, other: LoadResult) -> LoadResult:
        return LoadResult(self.loaded + other.loaded, self.skipped + other.skipped)


class BatchWriter(Protocol):
    """A backend's two halves of loading a batch.

    ``prepare`` is the Python work on a batch (formatting rows) and runs in the
    caller's thread; ``write`` is one transaction, mostly the database's work, and
    runs in the loader's writer thread. Each batch is prepared while the one before
    it is written.
    """

    def prepare(self, items: list[dict[str, Any]]) -> Any:
        """The batch made ready to write; raises InvalidInputError for an item the
        backend refuses."""
        ...

    def write(self, prepared: Any) -> LoadResult:
        """Write one prepared batch in one transaction, whole or not at all."""
        ...

    def close(self) -> None:
        """Release what the writes kept open; called in the writer's thread, once."""
        ...


class BatchTarget(Protocol):
    """What an ``ItemLoader`` writes into: a catalog's batch writer for a method."""

    def batch_writer(self, method: LoadMethod) -> BatchWriter:
        """The writer of checked batches, unique by (collection, id), with ``method``."""
        ...


class ItemLoader:
    """Loads batches of items into a catalog, one transaction a batch, in order.

    While a batch is written (one writer thread, one batch in flight) the next one
    is checked and prepared, so the database and Python work at the same time; at
    most two batches are held. The batches are written one after the other, as if
    loaded by separate calls. ``result`` counts the batches written so far; when
    ``add`` or leaving the ``with`` block raises, ``failed_label`` is the label of the
    batch that failed, the batches before it are written and none after it.
    """

    def __init__(self, catalog: BatchTarget, method: LoadMethod) -> None:
        self.method = check_load_method(method)
        self.result = LoadResult()
        self.failed_label: str | None = None
        self._writer = catalog.batch_writer(self.method)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stac-writer")
        self._in_flight: tuple[Future[LoadResult], str | None] | None = None

    def add(
        self, items: list[dict[str, Any]], *, checked: bool = False, label: str | None = None
    ) -> None:
        """Check (unless ``checked``) and prepare a batch, then start writing it once the
        previous batch is written. Raises that batch's error, or this one's."""
        try:
            if not checked:
                check_items(items)
            unique, superseded = unique_items(items, self.method)
            prepared = self._writer.prepare(unique) if unique else None
        except BaseException:
            self._settle()
            self.failed_label = label
            raise
        if error := self._settle():
            raise error
        if prepared is not None:
            future = self._thread.submit(self._write, prepared, superseded)
        else:
            future = Future()
            future.set_result(LoadResult(skipped=superseded))
        self._in_flight = (future, label)

    def _write(self, prepared: Any, superseded: int) -> LoadResult:
        return self._writer.write(prepared) + LoadResult(skipped=superseded)

    def _settle(self) -> BaseException | None:
        """Wait for the batch in flight: count it, or return its error."""
        if self._in_flight is None:
            return None
        future, label = self._in_flight
        self._in_flight = None
        error = future.exception()
        if error is None:
            self.result += future.result()
        else:
            self.failed_label = label
        return error

    def __enter__(self) -> ItemLoader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            # After an error elsewhere the batch in flight still finishes (a transaction
            # is never cut off) and counts, but its own error does not hide that one.
            failure = self._settle()
            if failure is not None and error is None:
                raise failure
        finally:
            try:
                # In the writer thread: a connection is closed where it was used.
                self._thread.submit(self._writer.close).result()
            finally:
                self._thread.shutdown(wait=True)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of ``size`` items (the last one shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be at least 1, not {size}")
    for batch in itertools.batched(items, size):
        yield list(batch)


def check_load_method(method: str) -> LoadMethod:
    if method not in LOAD_METHODS:
        raise InvalidInputError("method", f"{method!r} is not one of {', '.join(LOAD_METHODS)}")
    return method  # type: ignore[return-value]


def unique_items(
    items: list[dict[str, Any]], method: LoadMethod
) -> tuple[list[dict[str, Any]], int]:
    """One item per (collection, id), as if repeats were loaded one after the other.

    pgSTAC itself fails on a repeat inside one batch for every method but ignore
    (ON CONFLICT cannot touch a row twice); sequential semantics instead make the
    outcome independent of where batch boundaries fall.
    """
    keys = [(item["collection"], item["id"]) for item in items]
    if len(set(keys)) == len(keys):
        return items, 0
    if method == "insert":
        seen: set[tuple[str, str]] = set()
        for key in keys:
            if key in seen:
                raise InvalidInputError(
                    f"item {key[1]!r}", f"appears twice for collection {key[0]!r} (method insert)"
                )
            seen.add(key)
    # ignore keeps the first copy; upsert and delsert end with the last one.
    chosen: dict[tuple[str, str], dict[str, Any]] = {}
    for key, item in zip(keys, items, strict=True):
        if method == "ignore":
            chosen.setdefault(key, item)
        else:
            chosen.pop(key, None)
            chosen[key] = item
    return list(chosen.values()), len(items) - len(chosen)
