"""The warehouse: where vector (and H3) tables live. PostGIS on production, a DuckDB file
with the spatial extension on embedded; both hold the same tables in the same schemas.

Loads are all-or-nothing: rows go into a staging table, which gets its primary key,
spatial index and statistics, and then replaces the table in one transaction, so
readers see the old table or the new one, never half of one. Plain classes, no Dagster:
``warehouse_resources`` hands them to assets, ``backends.warehouse`` to the CLI.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from geo_platform.lib.tables import TableSpec
from geo_platform.lib.vector.tiles import TileOptions


@dataclass(frozen=True)
class GeometryCheck:
    """What the asset checks read back from a stored table."""

    rows: int
    invalid: int  # non-null geometries that are not valid
    srids: tuple[int, ...]  # distinct SRIDs of the stored geometries


class PartitionWriter(ABC):
    @abstractmethod
    def replace(self, partition: Mapping[str, str | int], batches: Iterable[pa.RecordBatch]) -> int:
        """``Warehouse.replace_partition`` on the writer's connection and table."""


@dataclass(kw_only=True, frozen=True)
class Warehouse(ABC):
    @property
    @abstractmethod
    def location(self) -> str:
        """Where the warehouse is, for messages: never a secret."""

    @abstractmethod
    def replace_table(
        self,
        spec: TableSpec,
        batches: Iterable[pa.RecordBatch],
        *,
        before_swap: Callable[[], object] | None = None,
    ) -> int:
        """Load ``batches`` (``spec``'s columns, geometry as WKB) into a staging table,
        index it, and swap it in for ``spec.schema.spec.name`` in one transaction.
        ``before_swap`` is called once the staged table is ready, just before the swap.

        Returns the rows loaded. On any error (``before_swap``'s included) the previous
        table is left as it was.
        """

    def replace_table_checked(
        self,
        spec: TableSpec,
        batches: Iterable[pa.RecordBatch],
        *,
        before_swap: Callable[[], object] | None = None,
    ) -> tuple[int, GeometryCheck]:
        """``replace_table``, and ``check_geometries`` of the rows swapped in (a backend
        may check them in the staging table while it builds the indexes)."""
        assert spec.geometry is not None, f"{spec.schema}.{spec.name} has no geometry"
        rows = self.replace_table(spec, batches, before_swap=before_swap)
        return rows, self.check_geometries(spec.schema, spec.name, spec.geometry.name)

    def replace_partition(
        self,
        spec: TableSpec,
        partition: Mapping[str, str | int],
        batches: Iterable[pa.RecordBatch],
    ) -> int:
        """Replace the rows of ``spec``'s table whose ``partition`` columns hold its values
        (``{"resolution": 4}``) by ``batches``, leaving every other row alone.

        The table (with its keys and indexes) is created if missing. The partition's rows
        are deleted and the batches inserted in one transaction: readers see the old
        partition or the new one, never a mix. A batch row outside the partition is an
        error (``ValueError``) and leaves the table as it was. Returns the rows loaded.
        """
        with self.partition_writer(spec) as writer:
            return writer.replace(partition, batches)

    @abstractmethod
    def partition_writer(self, spec: TableSpec) -> AbstractContextManager[PartitionWriter]:
        """One connection for replacing many partitions of ``spec``'s table in turn (what
        the connection, table checks and index upkeep cost is paid once, not per
        partition); each ``replace`` is its own transaction, as ``replace_partition``."""

    @abstractmethod
    def read_table(
        self, schema: str, name: str, columns: list[str], geometry: str | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The table's ``columns`` (and ``geometry`` last, as ISO WKB) in record batches;
        ``LookupError`` if the table does not exist."""

    @abstractmethod
    def drop_table(self, schema: str, name: str) -> None:
        """Drop a table if it exists."""

    @abstractmethod
    def tables(self, schema: str) -> list[str]:
        """Names of the tables in ``schema`` (registry tables, starting with ``_``, too)."""

    @abstractmethod
    def row_count(self, schema: str, name: str) -> int:
        """Rows of a table; ``LookupError`` if it does not exist."""

    @abstractmethod
    def columns(self, schema: str, name: str) -> list[tuple[str, str]]:
        """``(column, SQL type)`` of a table, in order."""

    @abstractmethod
    def check_geometries(self, schema: str, name: str, column: str) -> GeometryCheck:
        """Rows, invalid geometries and SRIDs, as stored."""

    @abstractmethod
    def mvt_tiles(
        self, schema: str, name: str, column: str, srid: int, zoom: int, options: TileOptions
    ) -> list[tuple[int, int, bytes]]:
        """Every non-empty ``(x, y, mvt)`` tile of ``zoom``, made by the database's
        ``ST_AsMVT``, geometries simplified to one tile unit and clipped to the buffer."""

    @abstractmethod
    def record_layers(self, blob_key: str, source_sha256: str, records: list[dict]) -> list[str]:
        """Make ``records`` (one per loaded table) the registry entries of ``blob_key``.

        Tables recorded for the key earlier but absent now (a layer removed from the
        file) are dropped; their names are returned.
        """

    @abstractmethod
    def layers(self, blob_key: str | None = None) -> list[dict[str, Any]]:
        """Registry entries (``table``, ``blob_key``, ``source_sha256``, the record), by
        table; those of one key, or all."""
