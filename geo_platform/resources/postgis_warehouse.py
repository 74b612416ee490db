"""The production warehouse: PostGIS. Rows arrive by COPY: binary (geometry as EWKB), or CSV
(geometry as hex EWKB) for tables with a column binary COPY is not written for here."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from geo_platform.lib.pgcopy import SIGNATURE, TRAILER, binary_rows, binary_supported
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
READ_BATCH_ROWS = 65_536
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, batch_size=65_536)


_SQL_TYPES = (
    (pa.types.is_boolean, "boolean"),
    (pa.types.is_int32, "integer"),
    (pa.types.is_int64, "bigint"),
    (pa.types.is_float32, "real"),
    (pa.types.is_float64, "double precision"),
    (pa.types.is_date32, "date"),
    (pa.types.is_time, "time"),
    (pa.types.is_binary, "bytea"),
)


def sql_type(kind: pa.DataType) -> str:
    """PostgreSQL's type for a storage Arrow type (``lib.tables.storage_type``)."""
    if pa.types.is_decimal(kind):
        return f"numeric({kind.precision},{kind.scale})"
    if pa.types.is_timestamp(kind):
        return "timestamptz" if kind.tz else "timestamp"
    return next((name for test, name in _SQL_TYPES if test(kind)), "text")


def hex_strings(array: pa.Array, prefix: bytes) -> pa.Array:
    """Each binary value as ``prefix`` + lowercase hex, nulls kept, with no per-value Python:
    the values' bytes are hex-encoded in one call and sliced by doubled offsets."""
    array = array.cast(pa.binary())
    n = len(array)
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int32)[array.offset : array.offset + n + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    data = array.buffers()[2]
    digits = data.to_pybytes()[start:end].hex().encode() if data is not None else b""
    validity = pa.array(array.is_valid(), pa.bool_()).buffers()[1] if array.null_count else None
    hexed = pa.Array.from_buffers(
        pa.large_string(),
        n,
        [validity, pa.py_buffer((offsets.astype(np.int64) - start) * 2), pa.py_buffer(digits)],
        null_count=array.null_count,
    )
    if not prefix:
        return hexed
    text = pa.large_string()
    return pc.binary_join_element_wise(pa.scalar(prefix.decode(), text), hexed, pa.scalar("", text))


@dataclass(kw_only=True, frozen=True)
class PostgisWarehouse(Warehouse):
    dsn: str

    @property
    def location(self) -> str:
        info = psycopg.conninfo.conninfo_to_dict(self.dsn)
        return f"postgis://{info.get('host', '')}:{info.get('port', 5432)}/{info.get('dbname', '')}"

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        with psycopg.connect(self.dsn) as conn:
            if self.dsn not in _SCHEMA_READY:
                # Serialised: two first loads would race on CREATE SCHEMA otherwise.
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('geo_platform.warehouse'))")
                for name in _DDL:
                    conn.execute(read_sql("postgis", name))
                conn.commit()
                _SCHEMA_READY.add(self.dsn)
            yield conn

    def replace_table(
        self,
        spec: TableSpec,
        batches: Iterable[pa.RecordBatch],
        *,
        before_swap: Callable[[], object] | None = None,
    ) -> int:
        return self._replace(spec, batches, check=False, before_swap=before_swap)[0]

    def replace_table_checked(
        self,
        spec: TableSpec,
        batches: Iterable[pa.RecordBatch],
        *,
        before_swap: Callable[[], object] | None = None,
    ) -> tuple[int, GeometryCheck]:
        rows, found = self._replace(spec, batches, check=True, before_swap=before_swap)
        assert found is not None
        return rows, found

    def _replace(
        self,
        spec: TableSpec,
        batches: Iterable[pa.RecordBatch],
        *,
        check: bool,
        before_swap: Callable[[], object] | None,
    ) -> tuple[int, GeometryCheck | None]:
        tag = short_hash(f"{spec.schema}.{spec.name}", 12)
        schema, stage = sql.Identifier(spec.schema), sql.Identifier(f"_stage_{tag}")
        with self._connection() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            # One load of a table at a time; held until this connection closes.
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"{spec.schema}.{spec.name}"])
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(schema, stage))
            try:
                # Created in the COPY's own transaction: COPY FREEZE writes the rows frozen,
                # and the index builds and checks that read them next don't rewrite every
                # page to set hint bits. Committed under the staging name, which no reader
                # uses, so that other connections can index and check it at once.
                conn.execute(self._create(spec, schema, stage))
                rows = self._copy(conn, spec, schema, stage, batches, freeze=True)
                conn.commit()
                found = self._index_staged(conn, spec, schema, f"_stage_{tag}", tag, check)
                if before_swap is not None:
                    before_swap()
                self._swap(conn, spec, schema, stage, tag)
                conn.commit()
            except BaseException:
                conn.rollback()
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}.{}").format(schema, stage))
                conn.commit()
                raise
        return rows, found

    def _index_staged(
        self,
        conn: psycopg.Connection,
        spec: TableSpec,
        schema: sql.Identifier,
        stage_name: str,
        tag: str,
        check: bool,
    ) -> GeometryCheck | None:
        """The staged table's indexes, each built on its own connection at the same time
        (CREATE INDEX locks out writers, not other index builds), with the geometry check
        beside them: the GiST build runs on one core and leaves the other free. The
        primary key then adopts its unique index; statistics last."""
        stage = sql.Identifier(stage_name)
        builds = [
            self._index_statement(schema, stage, f"{tag}_{part}_new", columns, method)
            for part, columns, method in self._index_parts(spec)
        ]
        with ThreadPoolExecutor(len(builds) + 1, thread_name_prefix="index") as pool:
            done = [pool.submit(self._execute, statement) for statement in builds]
            found = (
                pool.submit(self.check_geometries, spec.schema, stage_name, spec.geometry.name)
                if check and spec.geometry is not None
                else None
            )
            for future in done:
                future.result()
            result = found.result() if found is not None else None
        if spec.primary_key:
            pkey = sql.Identifier(f"{tag}_pkey_new")
            conn.execute(
                sql.SQL("ALTER TABLE {}.{} ADD CONSTRAINT {} PRIMARY KEY USING INDEX {}").format(
                    schema, stage, pkey, pkey
                )
            )
        conn.execute(sql.SQL("ANALYZE {}.{}").format(schema, stage))
        return result

    def _index_parts(self, spec: TableSpec) -> list[tuple[str, list[str], str]]:
        """``(name part, columns, method)`` of every index of ``spec``'s table."""
        parts: list[tuple[str, list[str], str]] = []
        if spec.primary_key:
            parts.append(("pkey", list(spec.primary_key), "unique"))
        if spec.geometry is not None:
            parts.append(("geom", [spec.geometry.name], "gist"))
        parts += [
            (short_hash(index_name(index), 8), list(index_columns(index)), "btree")
            for index in spec.indexes
        ]
        return parts

    @staticmethod
    def _index_statement(
        schema: sql.Identifier,
        table: sql.Identifier,
        name: str,
        columns: list[str],
        method: str,
        *,
        if_not_exists: bool = False,
    ) -> sql.Composed:
        return sql.SQL("CREATE {}INDEX {}{} ON {}.{} USING {} ({})").format(
            sql.SQL("UNIQUE " if method == "unique" else ""),
            sql.SQL("IF NOT EXISTS " if if_not_exists else ""),
            sql.Identifier(name),
            schema,
            table,
            sql.SQL("gist" if method == "gist" else "btree"),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
        )

    def _execute(self, statement: sql.Composed) -> None:
        with self._connection() as conn:
            conn.execute(statement)

    @contextmanager
    def partition_writer(self, spec: TableSpec) -> Iterator[PartitionWriter]:
        with self._connection() as conn:
            conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(spec.schema))
            )
            # Loads of one table one at a time (held until this connection closes): the
            # first creates the table, and partitions never interleave their swaps.
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [f"{spec.schema}.{spec.name}"])
            self._ensure_table(conn, spec)
            conn.commit()
            writer = _PostgisPartitionWriter(conn, spec, self)
            yield writer
            if writer.replaced:
                conn.execute(
                    sql.SQL("ANALYZE {}.{}").format(
                        sql.Identifier(spec.schema), sql.Identifier(spec.name)
                    )
                )
                conn.commit()

    def _ensure_table(self, conn: psycopg.Connection, spec: TableSpec) -> None:
        """The partitioned table, created with its key and indexes on first use (an index
        added to ``spec`` since is built on the table as it is); a table of other columns
        is refused rather than mixed with these rows."""
        found = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = %s ORDER BY ordinal_position",
            [spec.schema, spec.name],
        ).fetchall()
        schema, target = sql.Identifier(spec.schema), sql.Identifier(spec.name)
        tag = short_hash(f"{spec.schema}.{spec.name}", 12)
        if found:
            check_columns(spec, [r[0] for r in found])
            for part, columns, method in self._index_parts(spec):
                if method == "btree":  # the key and geometry index came with the table
                    conn.execute(
                        self._index_statement(
                            schema, target, f"{tag}_{part}", columns, method, if_not_exists=True
                        )
                    )
            return
        conn.execute(self._create(spec, schema, target))
        self._index(conn, spec, schema, target, tag)
        self._swap_index_names(conn, spec, schema, tag)

    def read_table(
        self, schema: str, name: str, columns: list[str], geometry: str | None = None
    ) -> Iterator[pa.RecordBatch]:
        selects: list[sql.Composable] = [sql.Identifier(c) for c in columns]
        if geometry is not None:
            selects.append(sql.SQL("ST_AsBinary({})").format(sql.Identifier(geometry)))
        names = [*columns, *([geometry] if geometry is not None else [])]
        query = sql.SQL("SELECT {} FROM {}.{}").format(
            sql.SQL(", ").join(selects), sql.Identifier(schema), sql.Identifier(name)
        )
        with self._connection() as conn:
            try:
                conn.execute(
                    sql.SQL("SELECT NULL FROM {}.{} LIMIT 0").format(
                        sql.Identifier(schema), sql.Identifier(name)
                    )
                )
            except psycopg.errors.UndefinedTable:
                raise LookupError(f"{schema}.{name}: no such table") from None
            # A server-side cursor: the table arrives a batch at a time.
            with conn.cursor(name="read_table") as cur:
                cur.execute(query)
                while rows := cur.fetchmany(READ_BATCH_ROWS):
                    arrays = [list(column) for column in zip(*rows, strict=True)]
                    if geometry is not None:
                        arrays[-1] = [None if v is None else bytes(v) for v in arrays[-1]]
                    yield pa.RecordBatch.from_pydict(dict(zip(names, arrays, strict=True)))

    def _create(
        self, spec: TableSpec, schema: sql.Identifier, stage: sql.Identifier
    ) -> sql.Composed:
        # Key columns NOT NULL: a primary key then adopts its unique index without a scan.
        columns = [
            sql.SQL("{} {}{}").format(
                sql.Identifier(name),
                sql.SQL(sql_type(kind)),
                sql.SQL(" NOT NULL" if name in spec.primary_key else ""),
            )
            for name, kind in spec.columns
        ]
        if spec.geometry is not None:
            geom = sql.Identifier(spec.geometry.name)
            # Untyped geometry with an SRID check: a layer may mix 2D and 3D geometries,
            # which a typed column (geometry(Geometry, 4326) is 2D only) would refuse.
            columns.append(
                sql.SQL("{} geometry CHECK (ST_SRID({}) = {})").format(
                    geom, geom, sql.Literal(spec.geometry.srid)
                )
            )
        return sql.SQL("CREATE TABLE {}.{} ({})").format(schema, stage, sql.SQL(", ").join(columns))

    def _copy(
        self,
        conn: psycopg.Connection,
        spec: TableSpec,
        schema: sql.Identifier,
        stage: sql.Identifier,
        batches: Iterable[pa.RecordBatch],
        *,
        freeze: bool = False,
    ) -> int:
        """COPY the batches into ``schema.stage``; ``freeze`` only for a table created in
        this transaction (PostgreSQL refuses FREEZE into any other)."""
        names = spec.column_names
        binary = binary_supported(spec)
        statement = sql.SQL("COPY {}.{} ({}) FROM STDIN (FORMAT {}{})").format(
            schema,
            stage,
            sql.SQL(", ").join(map(sql.Identifier, names)),
            sql.SQL("binary" if binary else "csv"),
            sql.SQL(", FREEZE" if freeze else ""),
        )
        rows = 0
        with conn.cursor() as cur, cur.copy(statement) as copy:
            if binary:
                copy.write(SIGNATURE)
            for batch in batches:
                rows += batch.num_rows
                copy.write(binary_rows(spec, batch) if binary else csv_rows(spec, batch))
            if binary:
                copy.write(TRAILER)
        return rows

    def _index(
        self,
        conn: psycopg.Connection,
        spec: TableSpec,
        schema: sql.Identifier,
        stage: sql.Identifier,
        tag: str,
    ) -> None:
        """The table's key and indexes, one after another on ``conn`` (a partitioned table:
        its primary key cannot adopt a unique index built before, as a staged table's does)."""
        if spec.primary_key:
            conn.execute(
                sql.SQL("ALTER TABLE {}.{} ADD CONSTRAINT {} PRIMARY KEY ({})").format(
                    schema,
                    stage,
                    sql.Identifier(f"{tag}_pkey_new"),
                    sql.SQL(", ").join(map(sql.Identifier, spec.primary_key)),
                )
            )
        for part, columns, method in self._index_parts(spec):
            if method != "unique":
                conn.execute(
                    self._index_statement(schema, stage, f"{tag}_{part}_new", columns, method)
                )
        conn.execute(sql.SQL("ANALYZE {}.{}").format(schema, stage))

    def _swap(
        self,
        conn: psycopg.Connection,
        spec: TableSpec,
        schema: sql.Identifier,
        stage: sql.Identifier,
        tag: str,
    ) -> None:
        """Drop the old table and rename the staging one into place: one transaction."""
        conn.execute(
            sql.SQL("DROP TABLE IF EXISTS {}.{}").format(schema, sql.Identifier(spec.name))
        )
        conn.execute(
            sql.SQL("ALTER TABLE {}.{} RENAME TO {}").format(
                schema, stage, sql.Identifier(spec.name)
            )
        )
        self._swap_index_names(conn, spec, schema, tag)

    def _swap_index_names(
        self, conn: psycopg.Connection, spec: TableSpec, schema: sql.Identifier, tag: str
    ) -> None:
        """The staged table's indexes (``<tag>_<part>_new``) under their lasting names."""
        renames = []
        if spec.primary_key:
            renames.append("pkey")
        if spec.geometry is not None:
            renames.append("geom")
        renames += [short_hash(index_name(index), 8) for index in spec.indexes]
        for part in renames:
            conn.execute(
                sql.SQL("ALTER INDEX {}.{} RENAME TO {}").format(
                    schema, sql.Identifier(f"{tag}_{part}_new"), sql.Identifier(f"{tag}_{part}")
                )
            )

    def drop_table(self, schema: str, name: str) -> None:
        with self._connection() as conn:
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(name)
                )
            )

    def tables(self, schema: str) -> list[str]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename",
                [schema],
            ).fetchall()
        return [r[0] for r in rows]

    def row_count(self, schema: str, name: str) -> int:
        with self._connection() as conn:
            try:
                row = conn.execute(
                    sql.SQL("SELECT count(*) FROM {}.{}").format(
                        sql.Identifier(schema), sql.Identifier(name)
                    )
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                raise LookupError(f"{schema}.{name}: no such table") from None
        assert row is not None
        return int(row[0])

    def columns(self, schema: str, name: str) -> list[tuple[str, str]]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT column_name, udt_name FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                [schema, name],
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def check_geometries(self, schema: str, name: str, column: str) -> GeometryCheck:
        geom = sql.Identifier(column)
        table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
        # min/max rather than array_agg(DISTINCT ...), which no parallel worker can run:
        # ST_IsValid over a million polygons then takes half the time. The distinct SRIDs
        # are listed only when there is more than one.
        query = sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE NOT ST_IsValid({g})), "
            "min(ST_SRID({g})), max(ST_SRID({g})) FROM {t}"
        ).format(g=geom, t=table)
        with self._connection() as conn:
            row = conn.execute(query).fetchone()
            assert row is not None
            rows, invalid, low, high = row
            srids = () if low is None else (low,)
            if low != high:
                found = conn.execute(
                    sql.SQL("SELECT DISTINCT ST_SRID({g}) FROM {t} WHERE {g} IS NOT NULL").format(
                        g=geom, t=table
                    )
                ).fetchall()
                srids = tuple(r[0] for r in found)
        return GeometryCheck(rows=int(rows), invalid=int(invalid), srids=tuple(sorted(srids)))

    def mvt_tiles(
        self, schema: str, name: str, column: str, srid: int, zoom: int, options: TileOptions
    ) -> list[tuple[int, int, bytes]]:
        attributes = [(col, kind) for col, kind in self.columns(schema, name) if col != column]
        props = [
            sql.SQL("{}::{}").format(sql.Identifier(col), sql.SQL(_mvt_type(kind)))
            if _mvt_type(kind) != "keep"
            else sql.Identifier(col)
            for col, kind in attributes
        ]
        prop_names = [sql.Identifier(col) for col, _ in attributes]
        query = sql.SQL(_MVT_QUERY).format(
            g=sql.Identifier(column),
            src=sql.SQL(".").join([sql.Identifier(schema), sql.Identifier(name)]),
            props=sql.SQL(", ").join(props) if props else sql.SQL("NULL::int AS _none"),
            prop_names=sql.SQL(", ").join([sql.SQL("t.{}").format(p) for p in prop_names])
            if prop_names
            else sql.SQL("t._none"),
        )
        params = {
            "srid": srid,
            "z": zoom,
            "size": tile_size(zoom),
            "half": HALF_WORLD,
            "maxlat": MAX_LATITUDE,
            "tol": simplify_tolerance(zoom, options.extent),
            "extent": options.extent,
            "buffer": options.buffer,
            "layer": options.layer,
            "last": (1 << zoom) - 1,
            "fid": "fid" if any(col == "fid" for col, _ in attributes) else None,
        }
        with self._connection() as conn:
            rows = conn.execute(query, params).fetchall()
        return [(int(x), int(y), bytes(tile)) for x, y, tile in rows]

    def record_layers(self, blob_key: str, source_sha256: str, records: list[dict]) -> list[str]:
        with self._connection() as conn:
            old = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM vector._layers WHERE blob_key = %s", [blob_key]
                ).fetchall()
            }
            stale = sorted(old - {r["table"] for r in records})
            for table in stale:
                conn.execute(
                    sql.SQL("DROP TABLE IF EXISTS vector.{}").format(sql.Identifier(table))
                )
            conn.execute("DELETE FROM vector._layers WHERE blob_key = %s", [blob_key])
            for record in records:
                conn.execute(
                    "INSERT INTO vector._layers (table_name, blob_key, layer, source_sha256, "
                    "record) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (table_name) DO UPDATE SET "
                    "blob_key = excluded.blob_key, layer = excluded.layer, "
                    "source_sha256 = excluded.source_sha256, record = excluded.record, "
                    "updated_at = now()",
                    [
                        record["table"],
                        blob_key,
                        record.get("layer"),
                        source_sha256,
                        orjson.dumps(record).decode(),
                    ],
                )
        return stale

    def layers(self, blob_key: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT table_name, blob_key, source_sha256, record FROM vector._layers"
        with self._connection() as conn:
            if blob_key is None:
                rows = conn.execute(query + " ORDER BY table_name").fetchall()
            else:
                rows = conn.execute(
                    query + " WHERE blob_key = %s ORDER BY table_name", [blob_key]
                ).fetchall()
        return [{"table": t, "blob_key": k, "source_sha256": h, "record": r} for t, k, h, r in rows]


class _PostgisPartitionWriter(PartitionWriter):
    def __init__(self, conn: psycopg.Connection, spec: TableSpec, warehouse: PostgisWarehouse):
        self.conn, self.spec, self.warehouse = conn, spec, warehouse
        self.replaced = False

    def replace(self, partition: Mapping[str, str | int], batches: Iterable[pa.RecordBatch]) -> int:
        """Delete and COPY straight into the table in one transaction: no staging copy to
        write twice, and the indexes are kept up by the server while the rows stream in."""
        spec, conn = self.spec, self.conn
        schema, target = sql.Identifier(spec.schema), sql.Identifier(spec.name)
        where = sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier(c), sql.Placeholder()) for c in partition
        )
        try:
            conn.execute(
                sql.SQL("DELETE FROM {}.{} WHERE {}").format(schema, target, where),
                list(partition.values()),
            )
            rows = self.warehouse._copy(
                conn, spec, schema, target, inside_partition(spec, partition, batches)
            )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        self.replaced = True
        return rows


def csv_rows(spec: TableSpec, batch: pa.RecordBatch) -> bytes:
    """One batch as COPY's CSV: geometry as ``SRID=n;`` + hex WKB, binary as ``\\x`` + hex."""
    columns = []
    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        if spec.geometry is not None and name == spec.geometry.name:
            columns.append(hex_strings(array, f"SRID={spec.geometry.srid};".encode()))
        elif pa.types.is_binary(array.type):
            columns.append(hex_strings(array, b"\\x"))
        else:
            columns.append(array)
    sink = io.BytesIO()
    pacsv.write_csv(pa.Table.from_arrays(columns, names=batch.schema.names), sink, _CSV_OPTIONS)
    return sink.getvalue()


def _mvt_type(udt: str) -> str:
    if udt in ("int2", "int4", "int8", "float4", "float8", "bool", "text", "varchar"):
        return "keep"
    if udt == "numeric":
        return "float8"
    return "text"


# Every tile of one zoom in one statement: each feature (in Web Mercator, clipped to
# its square world, simplified to one tile unit) meets the tiles its box covers.
_MVT_QUERY = """
WITH f AS (
    SELECT {props}, ST_Simplify(ST_Transform(ST_ClipByBox2D(
        ST_Transform({g}, 4326), ST_MakeEnvelope(-180, -%(maxlat)s, 180, %(maxlat)s, 4326)
    ), 3857), %(tol)s, true) AS g
    FROM {src} WHERE {g} IS NOT NULL AND NOT ST_IsEmpty({g})
), b AS (
    SELECT f.*,
        greatest(0, floor((ST_XMin(g) + %(half)s) / %(size)s))::int AS x0,
        least(%(last)s, floor((ST_XMax(g) + %(half)s) / %(size)s))::int AS x1,
        greatest(0, floor((%(half)s - ST_YMax(g)) / %(size)s))::int AS y0,
        least(%(last)s, floor((%(half)s - ST_YMin(g)) / %(size)s))::int AS y1
    FROM f WHERE g IS NOT NULL AND NOT ST_IsEmpty(g)
), t AS (
    SELECT x, y,
        ST_AsMVTGeom(b.g, ST_TileEnvelope(%(z)s, x, y), %(extent)s, %(buffer)s, true) AS geom,
        b.*
    FROM b, generate_series(b.x0, b.x1) AS x, generate_series(b.y0, b.y1) AS y
)
SELECT t.x, t.y, ST_AsMVT(r, %(layer)s, %(extent)s, 'geom', %(fid)s)
FROM t, LATERAL (SELECT t.geom, {prop_names}) AS r
WHERE t.geom IS NOT NULL
GROUP BY t.x, t.y
"""
