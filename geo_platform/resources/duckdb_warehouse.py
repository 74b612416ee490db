"""The embedded warehouse: one DuckDB file (``warehouse.duckdb``) with the spatial extension.

A separate file from the STAC catalog's: a long load holds DuckDB's one-writer lock on
its file, and searches of the catalog must not wait for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from geo_platform.errors import TransientError
from geo_platform.lib.duckdb_spatial import compose, load_spatial, quote_identifier, quote_literal
from geo_platform.lib.tables import (
    TableSpec,
    check_columns,
    index_columns,
    index_name,
    inside_partition,
)
from geo_platform.lib.vector.names import short_hash
from geo_platform.lib.vector.tiles import (
    HALF_WORLD,
    MAX_LATITUDE,
    TileOptions,
    simplify_tolerance,
    tile_size,
)
from geo_platform.resources.warehouse import GeometryCheck, PartitionWriter, Warehouse
from geo_platform.sql import read_sql

_DDL = ("001_warehouse.sql",)
_SCHEMA_READY: set[str] = set()
SRID_COMMENT = "srid="
READ_BATCH_ROWS = 65_536
WRITER_MEMORY_MB = 1024
_CREATE_RTREE = "CREATE INDEX IF NOT EXISTS {index} ON {schema}.{target} USING RTREE ({geom})"
_MVT_TYPES = {"VARCHAR", "FLOAT", "DOUBLE", "INTEGER", "BIGINT", "BOOLEAN"}


_SQL_TYPES = (
    (pa.types.is_boolean, "BOOLEAN"),
    (pa.types.is_int32, "INTEGER"),
    (pa.types.is_int64, "BIGINT"),
    (pa.types.is_float32, "FLOAT"),
    (pa.types.is_float64, "DOUBLE"),
    (pa.types.is_date32, "DATE"),
    (pa.types.is_time, "TIME"),
    (pa.types.is_binary, "BLOB"),
)


def sql_type(kind: pa.DataType) -> str:
    """DuckDB's type for a storage Arrow type (``lib.tables.storage_type``)."""
    if pa.types.is_decimal(kind):
        return f"DECIMAL({kind.precision},{kind.scale})"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMPTZ" if kind.tz else "TIMESTAMP"
    return next((name for test, name in _SQL_TYPES if test(kind)), "VARCHAR")


def _rtree(spec: TableSpec, template: str) -> str:
    """``template`` about the R-tree index of ``spec``'s geometry column."""
    assert spec.geometry is not None
    return compose(
        template,
        index=f"{short_hash(f'{spec.schema}.{spec.name}', 12)}_geom",
        schema=spec.schema,
        target=spec.name,
        geom=spec.geometry.name,
    )


def _mvt_property(column: str, kind: str) -> str:
    """A column as an ST_AsMVT property: DuckDB encodes only a few types."""
    if kind in _MVT_TYPES:
        return quote_identifier(column)
    cast = "VARCHAR"
    if kind.startswith("DECIMAL"):
        cast = "DOUBLE"
    elif kind in ("SMALLINT", "TINYINT"):
        cast = "INTEGER"
    return f"CAST({quote_identifier(column)} AS {cast}) AS {quote_identifier(column)}"


@dataclass(kw_only=True, frozen=True)
class DuckDBWarehouse(Warehouse):
    path: str
    lock_timeout_seconds: float = 120.0
    # DuckDB runs inside the pipeline's process and would take up to 80% of the machine's
    # memory: loads spill to disk beyond this instead.
    memory_limit: str = "512MB"

    @property
    def location(self) -> str:
        return self.path

    @contextmanager
    def _connection(self, *, spatial: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the file; DuckDB allows one writing process, so a locked
        file is waited for (with backoff) and then reported as a transient error."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_seconds
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(self.path)
                break
            except duckdb.IOException as e:
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise TransientError(f"warehouse {self.path} is busy: {e}") from e
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            con.execute("SET memory_limit = " + quote_literal(self.memory_limit))
            # Loading spatial costs ~0.3 s a connection: only where geometry is touched.
            if spatial:
                load_spatial(con)
            if self.path not in _SCHEMA_READY:
                for name in _DDL:
                    con.execute(read_sql("duckdb_warehouse", name))
                _SCHEMA_READY.add(self.path)
            yield con
        finally:
            con.close()

    def replace_table(
        self,
        spec: TableSpec,
        batches: Iterable[pa.RecordBatch],
        *,
        before_swap: Callable[[], object] | None = None,
    ) -> int:
        stage = f"_stage_{short_hash(f'{spec.schema}.{spec.name}', 12)}"
        names = {"schema": spec.schema, "stage": stage, "target": spec.name}
        with self._connection(spatial=spec.geometry is not None) as con:
            con.execute(compose("CREATE SCHEMA IF NOT EXISTS {schema}", **names))
            con.execute(compose("DROP TABLE IF EXISTS {schema}.{stage}", **names))
            con.execute(self._create(spec, stage))
            in_transaction = False
            try:
                rows = self._insert(con, spec, stage, batches)
                if spec.primary_key and spec.duckdb_indexes:
                    # Built once over the loaded rows: 0.5 s for a million, where keeping
                    # it during the inserts costs 4 s.
                    con.execute(
                        compose("ALTER TABLE {schema}.{stage} ADD PRIMARY KEY (", **names)
                        + ", ".join(map(quote_identifier, spec.primary_key))
                        + ")"
                    )
                if before_swap is not None:
                    before_swap()
                con.execute("BEGIN")
                in_transaction = True
                con.execute(compose("DROP TABLE IF EXISTS {schema}.{target}", **names))
                con.execute(compose("ALTER TABLE {schema}.{stage} RENAME TO {target}", **names))
                # DuckDB renames no table that has an index: the R-tree is built after the
                # rename, inside the same transaction.
                self._index(con, spec)
                con.execute("COMMIT")
                in_transaction = False
                con.execute(compose("ANALYZE {schema}.{target}", **names))
            except BaseException:
                if in_transaction:
                    con.execute("ROLLBACK")
                con.execute(compose("DROP TABLE IF EXISTS {schema}.{stage}", **names))
                raise
        return rows

    @contextmanager
    def partition_writer(self, spec: TableSpec) -> Iterator[PartitionWriter]:
        with self._connection(spatial=spec.geometry is not None) as con:
            # DuckDB's buffer pool may take 80% of the machine by default, and keeps the
            # blocks a long run of partitions writes: bounded, that run stays bounded.
            con.execute(f"SET memory_limit = '{WRITER_MEMORY_MB}MB'")
            con.execute("SET enable_progress_bar = false")
            con.execute(compose("CREATE SCHEMA IF NOT EXISTS {schema}", schema=spec.schema))
            self._ensure_table(con, spec)
            if spec.geometry is not None:
                # DuckDB applies a transaction's deletes to a stored R-tree at commit,
                # slowly (18 s for 5,882 of 295,000 cells): it is dropped for the writer's
                # partitions and built once after them (0.9 s for those 295,000).
                con.execute(_rtree(spec, "DROP INDEX IF EXISTS {schema}.{index}"))
            try:
                yield _DuckDBPartitionWriter(con, spec, self)
            finally:
                if spec.geometry is not None and spec.duckdb_indexes:
                    con.execute(_rtree(spec, _CREATE_RTREE))

    def _ensure_table(self, con: duckdb.DuckDBPyConnection, spec: TableSpec) -> None:
        """The partitioned table, created with its key and indexes on first use; a table of
        other columns is refused rather than mixed with these rows."""
        found = con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = "
            "current_database() AND table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [spec.schema, spec.name],
        ).fetchall()
        if found:
            check_columns(spec, [r[0] for r in found])
            return
        con.execute("BEGIN")
        con.execute(self._create(spec, spec.name))
        if spec.primary_key and spec.duckdb_indexes:
            con.execute(
                compose(
                    "ALTER TABLE {schema}.{target} ADD PRIMARY KEY (",
                    schema=spec.schema,
                    target=spec.name,
                )
                + ", ".join(map(quote_identifier, spec.primary_key))
                + ")"
            )
        self._index(con, spec)
        con.execute("COMMIT")

    def read_table(
        self, schema: str, name: str, columns: list[str], geometry: str | None = None
    ) -> Iterator[pa.RecordBatch]:
        selects = [quote_identifier(c) for c in columns]
        if geometry is not None:
            selects.append(
                f"ST_AsWKB({quote_identifier(geometry)})::BLOB AS {quote_identifier(geometry)}"
            )
        query = f"SELECT {', '.join(selects)} FROM " + compose(
            "{schema}.{name}", schema=schema, name=name
        )
        with self._connection(spatial=geometry is not None) as con:
            try:
                reader = con.execute(query).to_arrow_reader(READ_BATCH_ROWS)
            except duckdb.CatalogException:
                raise LookupError(f"{schema}.{name}: no such table") from None
            yield from reader

    def _create(self, spec: TableSpec, stage: str) -> str:
        columns = [f"{quote_identifier(n)} {sql_type(k)}" for n, k in spec.columns]
        if spec.geometry is not None:
            columns.append(f"{quote_identifier(spec.geometry.name)} GEOMETRY")
        return compose("CREATE TABLE {schema}.{stage} (", schema=spec.schema, stage=stage) + (
            ", ".join(columns) + ")"
        )

    def _insert(
        self,
        con: duckdb.DuckDBPyConnection,
        spec: TableSpec,
        stage: str,
        batches: Iterable[pa.RecordBatch],
    ) -> int:
        selects = [quote_identifier(n) for n, _ in spec.columns]
        if spec.geometry is not None:
            selects.append(f"ST_GeomFromWKB({quote_identifier(spec.geometry.name)})")
        statement = compose("INSERT INTO {schema}.{stage} SELECT ", schema=spec.schema, stage=stage)
        statement += ", ".join(selects) + " FROM _incoming"
        rows = 0
        for batch in batches:
            con.register("_incoming", pa.Table.from_batches([batch]))
            con.execute(statement)
            con.unregister("_incoming")
            rows += batch.num_rows
        return rows

    def _index(self, con: duckdb.DuckDBPyConnection, spec: TableSpec) -> None:
        tag = short_hash(f"{spec.schema}.{spec.name}", 12)
        if spec.geometry is not None:
            # DuckDB 1.5 keeps no CRS in a stored GEOMETRY column (GEOMETRY('EPSG:4326')
            # is forgotten when the file is reopened): the column's comment records it.
            con.execute(
                compose(
                    "COMMENT ON COLUMN {schema}.{target}.{geom} IS ",
                    schema=spec.schema,
                    target=spec.name,
                    geom=spec.geometry.name,
                )
                + quote_literal(f"{SRID_COMMENT}{spec.geometry.srid}")
            )
        if not spec.duckdb_indexes:
            return
        if spec.geometry is not None:
            con.execute(_rtree(spec, _CREATE_RTREE))
        for index in spec.indexes:
            con.execute(
                compose(
                    "CREATE INDEX {index} ON {schema}.{target} (",
                    index=f"{tag}_{short_hash(index_name(index), 8)}",
                    schema=spec.schema,
                    target=spec.name,
                )
                + ", ".join(map(quote_identifier, index_columns(index)))
                + ")"
            )

    def drop_table(self, schema: str, name: str) -> None:
        with self._connection() as con:
            con.execute(compose("DROP TABLE IF EXISTS {schema}.{name}", schema=schema, name=name))

    def tables(self, schema: str) -> list[str]:
        with self._connection() as con:
            rows = con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? "
                "AND database_name = current_database() ORDER BY table_name",
                [schema],
            ).fetchall()
        return [r[0] for r in rows]

    def row_count(self, schema: str, name: str) -> int:
        with self._connection() as con:
            try:
                row = con.execute(
                    compose("SELECT count(*) FROM {schema}.{name}", schema=schema, name=name)
                ).fetchone()
            except duckdb.CatalogException:
                raise LookupError(f"{schema}.{name}: no such table") from None
        assert row is not None
        return int(row[0])

    def columns(self, schema: str, name: str) -> list[tuple[str, str]]:
        with self._connection() as con:
            rows = con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, name],
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def check_geometries(self, schema: str, name: str, column: str) -> GeometryCheck:
        query = compose(
            "SELECT count(*), count(*) FILTER (WHERE {g} IS NOT NULL AND NOT ST_IsValid({g})) "
            "FROM {schema}.{name}",
            g=column,
            schema=schema,
            name=name,
        )
        with self._connection(spatial=True) as con:
            row = con.execute(query).fetchone()
            comment = con.execute(
                "SELECT comment FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = ? AND table_name = ? AND column_name = ?",
                [schema, name, column],
            ).fetchone()
        assert row is not None
        text = str(comment[0] or "") if comment else ""
        srids = (int(text.removeprefix(SRID_COMMENT)),) if text.startswith(SRID_COMMENT) else ()
        return GeometryCheck(rows=int(row[0]), invalid=int(row[1]), srids=srids)

    def mvt_tiles(
        self, schema: str, name: str, column: str, srid: int, zoom: int, options: TileOptions
    ) -> list[tuple[int, int, bytes]]:
        attributes = [(c, k) for c, k in self.columns(schema, name) if c != column]
        props = ", ".join(_mvt_property(c, k) for c, k in attributes)
        struct = ", ".join(
            [f"{quote_literal('geom')}: mvt"]
            + [f"{quote_literal(c)}: {quote_identifier(c)}" for c, _ in attributes]
        )
        has_fid = any(c == "fid" for c, _ in attributes)
        lonlat = (
            compose("{g}", g=column)
            if srid == 4326
            else compose("ST_Transform({g}, ", g=column)
            + quote_literal(f"EPSG:{srid}")
            + ", 'EPSG:4326', true)"
        )
        query = (
            "WITH f AS (SELECT "
            + (props + ", " if props else "")
            + "ST_Simplify(ST_Transform(ST_Intersection("
            + lonlat
            + ", ST_MakeEnvelope(-180, -$maxlat, 180, $maxlat)), 'EPSG:4326', 'EPSG:3857', true),"
            " $tol) AS g FROM "
            + compose(
                "{schema}.{name} WHERE {g} IS NOT NULL AND NOT ST_IsEmpty({g})",
                schema=schema,
                name=name,
                g=column,
            )
            + "), b AS (SELECT *,"
            " greatest(0, floor((ST_XMin(g) + $half) / $size))::INTEGER AS x0,"
            " least($last, floor((ST_XMax(g) + $half) / $size))::INTEGER AS x1,"
            " greatest(0, floor(($half - ST_YMax(g)) / $size))::INTEGER AS y0,"
            " least($last, floor(($half - ST_YMin(g)) / $size))::INTEGER AS y1"
            " FROM f WHERE g IS NOT NULL AND NOT ST_IsEmpty(g)),"
            " bx AS (SELECT *, unnest(range(x0, x1 + 1)) AS x FROM b),"
            " bxy AS (SELECT *, unnest(range(y0, y1 + 1)) AS y FROM bx),"
            " t AS (SELECT *, ST_AsMVTGeom(g,"
            " ST_Extent(ST_TileEnvelope($z, x::INTEGER, y::INTEGER)),"
            " $extent, $buffer, true) AS mvt FROM bxy)"
            " SELECT x, y, ST_AsMVT({"
            + struct
            + "}, $layer, $extent::INTEGER, 'geom'"
            + (", 'fid'" if has_fid else "")
            + ") FROM t WHERE mvt IS NOT NULL AND NOT ST_IsEmpty(mvt) GROUP BY x, y"
        )
        params = {
            "z": zoom,
            "size": tile_size(zoom),
            "half": HALF_WORLD,
            "maxlat": MAX_LATITUDE,
            "tol": simplify_tolerance(zoom, options.extent),
            "extent": options.extent,
            "buffer": options.buffer,
            "layer": options.layer,
            "last": (1 << zoom) - 1,
        }
        with self._connection(spatial=True) as con:
            rows = con.execute(query, params).fetchall()
        return [(int(x), int(y), bytes(tile)) for x, y, tile in rows]

    def record_layers(self, blob_key: str, source_sha256: str, records: list[dict]) -> list[str]:
        with self._connection() as con:
            old = {
                r[0]
                for r in con.execute(
                    "SELECT table_name FROM vector._layers WHERE blob_key = ?", [blob_key]
                ).fetchall()
            }
            stale = sorted(old - {r["table"] for r in records})
            if stale:
                load_spatial(con)  # their R-tree indexes need it to be dropped
            con.execute("BEGIN")
            for table in stale:
                con.execute(compose("DROP TABLE IF EXISTS vector.{t}", t=table))
            con.execute("DELETE FROM vector._layers WHERE blob_key = ?", [blob_key])
            for record in records:
                con.execute(
                    "INSERT OR REPLACE INTO vector._layers "
                    "(table_name, blob_key, layer, source_sha256, record, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, now())",
                    [
                        record["table"],
                        blob_key,
                        record.get("layer"),
                        source_sha256,
                        orjson.dumps(record).decode(),
                    ],
                )
            con.execute("COMMIT")
        return stale

    def layers(self, blob_key: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT table_name, blob_key, source_sha256, record FROM vector._layers"
        with self._connection() as con:
            if blob_key is None:
                rows = con.execute(query + " ORDER BY table_name").fetchall()
            else:
                rows = con.execute(
                    query + " WHERE blob_key = ? ORDER BY table_name", [blob_key]
                ).fetchall()
        return [
            {"table": t, "blob_key": k, "source_sha256": h, "record": orjson.loads(r)}
            for t, k, h, r in rows
        ]


class _DuckDBPartitionWriter(PartitionWriter):
    def __init__(
        self, con: duckdb.DuckDBPyConnection, spec: TableSpec, warehouse: DuckDBWarehouse
    ) -> None:
        self.con, self.spec, self.warehouse = con, spec, warehouse

    def replace(self, partition: Mapping[str, str | int], batches: Iterable[pa.RecordBatch]) -> int:
        spec, con = self.spec, self.con
        where = " AND ".join(f"{quote_identifier(c)} = ?" for c in partition)
        con.execute("BEGIN")
        try:
            con.execute(
                compose(
                    "DELETE FROM {schema}.{target} WHERE ", schema=spec.schema, target=spec.name
                )
                + where,
                list(partition.values()),
            )
            rows = self.warehouse._insert(
                con, spec, spec.name, inside_partition(spec, partition, batches)
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return rows
