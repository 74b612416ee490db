"""STAC catalogs: the interface every backend implements.

pgSTAC is the reference for every semantic (load methods, datetime ranges, geometry
intersection, the "query" extension, sort order; see ``geo_platform.lib.stac``): the
embedded catalog (``duckdb_catalog``) answers a search with the same items in the same
order as pgSTAC (``pgstac_catalog``) would. Plain classes, no Dagster: the ``stac``
commands import only what their backend needs, and ``stac_catalog_resources`` hands
them to assets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from geo_platform.lib.stac.collection import CollectionAggregate
from geo_platform.lib.stac.items import check_items
from geo_platform.lib.stac.loader import (
    DEFAULT_BATCH_SIZE,
    BatchWriter,
    ItemLoader,
    LoadMethod,
    LoadResult,
    batched,
)
from geo_platform.lib.stac.search import Bbox


@dataclass(kw_only=True, frozen=True)
class StacCatalog(ABC):
    """Where STAC items and collections live.

    Items are written in batches of ``batch_size``, one transaction each: an invalid
    item or a conflict rejects its whole batch, never half of it.
    """

    batch_size: int = DEFAULT_BATCH_SIZE

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the catalog is, for messages: never a secret."""

    @abstractmethod
    def upsert_collection(self, collection: dict[str, Any]) -> None:
        """Create or replace a collection."""

    @abstractmethod
    def update_collection(
        self, collection_id: str, change: Callable[[dict[str, Any] | None], dict[str, Any]]
    ) -> dict[str, Any]:
        """Replace a collection by ``change(current or None)`` in one transaction, so that
        concurrent writers extending it lose nothing; returns what was written."""

    @abstractmethod
    def get_collection(self, collection_id: str) -> dict[str, Any] | None:
        """A collection by id, or None."""

    @abstractmethod
    def list_collections(self) -> list[dict[str, Any]]:
        """Every collection, by id."""

    @abstractmethod
    def get_item(self, collection_id: str, item_id: str) -> dict[str, Any] | None:
        """An item by collection and id, or None."""

    @abstractmethod
    def delete_item(self, collection_id: str, item_id: str) -> bool:
        """Remove an item; False if there was none."""

    @abstractmethod
    def item_ids(self, collection_id: str) -> set[str]:
        """The ids of a collection's items (cheap: no item is read)."""

    @abstractmethod
    def collection_bbox(self, collection_id: str) -> tuple[float, ...] | None:
        """The bbox covering every item of a collection (west > east when it crosses the
        antimeridian), or None without items: ``collection_aggregate``'s bbox alone, read
        from columns, cheap enough to recompute after every batch of items."""

    @abstractmethod
    def collection_aggregate(self, collection_id: str) -> CollectionAggregate:
        """A collection's item count, extent, EPSG codes and bytes per tier, computed by
        the database rather than by reading the items here."""

    @abstractmethod
    def search(
        self,
        *,
        collections: Sequence[str] | None = None,
        bbox: Bbox | None = None,
        datetime: str | None = None,
        ids: Sequence[str] | None = None,
        query: Mapping[str, Any] | None = None,
        limit: int | None = 100,
    ) -> list[dict[str, Any]]:
        """Items matching every filter given, in pgSTAC's default order.

        ``bbox`` (W, S, E, N) intersects the item geometry; ``datetime`` is an instant,
        a date (that whole day) or a ``start/end`` range with ``..`` for an open end,
        overlapping the item's [start_datetime, end_datetime]; ``ids`` keeps those ids
        (an empty list matches nothing); ``query`` is the STAC API query extension
        (``{"gsd": {"lt": 1}}``, see :func:`parse_query`). An empty ``collections`` is
        no filter. Sorted newest first: datetime (start_datetime for a range item)
        descending, then collection and id descending. ``limit=None`` returns all.
        """

    @abstractmethod
    def batch_writer(self, method: LoadMethod) -> BatchWriter:
        """What writes batches of checked items, unique by (collection, id), with ``method``."""

    def loader(self, method: LoadMethod = "upsert") -> ItemLoader:
        """A bulk load in batches: ``with catalog.loader(m) as load: load.add(batch)``."""
        return ItemLoader(self, method)

    def load_items(
        self, items: Iterable[dict[str, Any]], method: LoadMethod = "upsert"
    ) -> LoadResult:
        """Load items with pgSTAC's methods; their collections must exist.

        ``insert`` fails on an id already in the collection, ``ignore`` skips it,
        ``upsert`` replaces it, ``delsert`` deletes it and inserts the new one. Within
        one call, a repeated id behaves as if the copies came one after the other.
        A list is checked whole before anything is written; another iterable is
        checked batch by batch, so batches before a bad item stay loaded.
        """
        checked = False
        if isinstance(items, Sequence):
            check_items(items)
            checked = True
        with self.loader(method) as load:
            for batch in batched(items, self.batch_size):
                load.add(batch, checked=checked)
        return load.result

    def upsert_items(self, items: Sequence[dict[str, Any]]) -> int:
        """Create or replace items (their collections must exist); returns how many."""
        return self.load_items(items, "upsert").loaded
