"""What a warehouse table looks like, independent of the warehouse: Arrow in, SQL out.

Vector layers and H3 grids describe their tables with these and hand the rows over
as Arrow record batches; each warehouse maps the Arrow types onto its own SQL types.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class GeometryColumn:
    name: str = "geom"
    srid: int = 4326


@dataclass(frozen=True)
class TableSpec:
    """A table: ``columns`` in order (name, Arrow type), the geometry column last if any.

    Batches handed to a warehouse have exactly these columns, the geometry as ISO WKB
    (``pa.binary()``), in this order.
    """

    schema: str
    name: str
    columns: tuple[tuple[str, pa.DataType], ...]
    primary_key: tuple[str, ...] = ()
    geometry: GeometryColumn | None = None
    # Extra plain (B-tree) indexes: a column, or a tuple of columns for a composite one.
    indexes: tuple[str | tuple[str, ...], ...] = field(default=())
    # Whether DuckDB keeps the key and indexes too. A big table written partition by
    # partition in key order does better without: DuckDB's min/max zonemaps find a key or
    # a partition by skipping row groups, where index upkeep costs more than the load.
    duckdb_indexes: bool = True

    @property
    def column_names(self) -> list[str]:
        names = [name for name, _ in self.columns]
        return [*names, self.geometry.name] if self.geometry else names

    def arrow_schema(self) -> pa.Schema:
        fields = [pa.field(name, kind) for name, kind in self.columns]
        if self.geometry:
            fields.append(pa.field(self.geometry.name, pa.binary()))
        return pa.schema(fields)


def index_columns(index: str | tuple[str, ...]) -> tuple[str, ...]:
    """The columns of an entry of ``TableSpec.indexes``."""
    return (index,) if isinstance(index, str) else index


def index_name(index: str | tuple[str, ...]) -> str:
    """The part of an index's name that stands for its columns."""
    return ",".join(index_columns(index))


def rows_outside(batch: pa.RecordBatch, partition: Mapping[str, str | int]) -> int:
    """How many rows of ``batch`` do not hold ``partition``'s values (nulls count)."""
    inside = pa.array(np.ones(batch.num_rows, dtype=bool))
    for column, value in partition.items():
        inside = pc.and_kleene(inside, pc.equal(batch.column(column), value))
    return batch.num_rows - int(pc.sum(pc.fill_null(inside, False)).as_py() or 0)


def inside_partition(
    spec: TableSpec, partition: Mapping[str, str | int], batches: Iterable[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    """``batches``, refused (``ValueError``) at the first row outside ``partition``."""
    for batch in batches:
        outside = rows_outside(batch, partition)
        if outside:
            raise ValueError(
                f"{outside:,} rows for {spec.schema}.{spec.name} are outside the partition "
                f"{dict(partition)}"
            )
        yield batch


def check_columns(spec: TableSpec, found: list[str]) -> None:
    """A table written partition by partition must hold exactly ``spec``'s columns."""
    if found != spec.column_names:
        raise ValueError(
            f"{spec.schema}.{spec.name} has the columns {found}, not {spec.column_names}: "
            "it was made by another version; drop it and materialize its partitions again"
        )


def storage_type(kind: pa.DataType) -> pa.DataType:  # noqa: PLR0911 - a case per type
    """The Arrow type a column is stored as: what both warehouses hold natively."""
    if pa.types.is_dictionary(kind):
        return storage_type(kind.value_type)
    if pa.types.is_boolean(kind) or pa.types.is_string(kind):
        return kind
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pa.string()
    if pa.types.is_signed_integer(kind):
        return pa.int64() if kind.bit_width == 64 else pa.int32()
    if pa.types.is_unsigned_integer(kind):
        # No unsigned types in PostgreSQL: the next signed width (uint64: exact decimal).
        return {8: pa.int32(), 16: pa.int32(), 32: pa.int64()}.get(
            kind.bit_width, pa.decimal128(20, 0)
        )
    if pa.types.is_floating(kind):
        return pa.float32() if kind.bit_width <= 32 else pa.float64()
    if pa.types.is_decimal(kind) or pa.types.is_date32(kind):
        return kind
    if pa.types.is_date64(kind):
        return pa.date32()
    if pa.types.is_timestamp(kind):
        return pa.timestamp("us", tz=kind.tz)
    if pa.types.is_time(kind):
        return pa.time64("us")
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return pa.binary()
    # Lists, structs, maps...: their JSON text.
    return pa.string()


def to_storage(array: pa.Array | pa.ChunkedArray, kind: pa.DataType) -> pa.Array:
    """``array`` as ``kind`` (from :func:`storage_type`)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type == kind:
        return array
    if kind == pa.string() and not (
        pa.types.is_string(array.type)
        or pa.types.is_large_string(array.type)
        or pa.types.is_dictionary(array.type)
        or pa.types.is_string_view(array.type)
    ):
        return pa.array(
            [None if v is None else json.dumps(v, default=str) for v in array.to_pylist()],
            pa.string(),
        )
    return array.cast(kind)
