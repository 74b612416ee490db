"""``geo-platform query``: read-only SQL with DuckDB over the platform's tables.

Embedded: the warehouse and catalog DuckDB files, attached read-only. Production:
PostGIS (and pgSTAC) through DuckDB's postgres extension, attached read-only, on a
PostgreSQL session that is itself read-only. Before the user's SQL runs, DuckDB is
locked down: no file access outside the platform's silver folder (embedded), no
ATTACH, INSTALL or LOAD, and the configuration cannot be changed back. Only SELECT
(and EXPLAIN) statements run; nothing is written anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa
from psycopg.conninfo import make_conninfo

from geo_platform.errors import GeoPlatformError, TransientError
from geo_platform.lib.duckdb_spatial import load_spatial, postgres_extension_path, quote_literal
from geo_platform.settings import PlatformSettings, Profile, get_postgres_settings

_ALLOWED = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
# Table functions that would hand SQL or files to something outside DuckDB's lock-down:
# postgres_query runs arbitrary SQL on the server (pg_read_file for a superuser).
_REFUSED_FUNCTION_PREFIXES = ("postgres_",)
_REFUSED_FUNCTIONS = {"st_read", "st_read_meta", "st_drivers", "read_osm", "shapefile_meta"}


class QueryRefused(GeoPlatformError):
    """The statement is not a read-only query over the platform's data."""


def refusal(con: duckdb.DuckDBPyConnection, text: str) -> str | None:
    """Why ``text`` may not run, or None."""
    try:
        statements = con.extract_statements(text)
    except duckdb.Error as e:
        return f"not valid SQL: {_first_line(e)}"
    if not statements:
        return "no statement given"
    for statement in statements:
        if statement.type not in _ALLOWED:
            kind = statement.type.name
            return f"{kind} statements are not allowed: geo-platform query only reads (SELECT)"
    row = con.execute("SELECT json_serialize_sql(?)", [text]).fetchone()
    tree = json.loads(row[0]) if row else {}
    for name in _function_names(tree):
        lowered = name.lower()
        if lowered.startswith(_REFUSED_FUNCTION_PREFIXES) or lowered in _REFUSED_FUNCTIONS:
            return f"function {name}() is not allowed in geo-platform query"
    return None


def _function_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("function_name"), str):
            yield node["function_name"]
        for value in node.values():
            yield from _function_names(value)
    elif isinstance(node, list):
        for value in node:
            yield from _function_names(value)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def open_readonly(settings: PlatformSettings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the platform's tables attached read-only, locked down."""
    con = duckdb.connect(":memory:")
    try:
        load_spatial(con)
        allowed: list[str] = []
        if settings.profile is Profile.PRODUCTION:
            con.execute(f"LOAD {quote_literal(postgres_extension_path())}")
            pg = get_postgres_settings()
            dsn = make_conninfo(
                host=pg.host,
                port=pg.port,
                user=pg.user,
                password=pg.password.get_secret_value(),
                dbname=pg.database,
                options="-c default_transaction_read_only=on",
            )
            try:
                con.execute(f"ATTACH {quote_literal(dsn)} AS warehouse (TYPE postgres, READ_ONLY)")
            except duckdb.Error as e:
                raise TransientError(
                    f"cannot reach PostgreSQL at {pg.redacted_dsn()}: {_first_line(e)}"
                ) from None
        else:
            path = settings.warehouse_path
            if not path.exists():
                raise QueryRefused("no warehouse yet: ingest a vector file first")
            _attach_file(con, str(path), "warehouse")
            if settings.catalog_path.exists():
                _attach_file(con, str(settings.catalog_path), "catalog")
            silver = settings.blob_root / "silver"
            allowed.append(str(silver) + "/")
        con.execute("USE warehouse")
        con.execute(f"SET allowed_directories = [{', '.join(map(quote_literal, allowed))}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def _attach_file(con: duckdb.DuckDBPyConnection, path: str, alias: str) -> None:
    try:
        con.execute(f"ATTACH {quote_literal(path)} AS {alias} (READ_ONLY)")
    except duckdb.IOException as e:
        raise TransientError(f"{path} is busy (a load is writing it): {_first_line(e)}") from None


def run_query(text: str, settings: PlatformSettings) -> pa.Table:
    """The result of a read-only query; ``QueryRefused`` for anything else."""
    con = open_readonly(settings)
    try:
        problem = refusal(con, text)
        if problem:
            raise QueryRefused(problem)
        try:
            return con.execute(text).to_arrow_table()
        except duckdb.Error as e:
            raise QueryRefused(_first_line(e)) from None
    finally:
        con.close()


def display_rows(table: pa.Table) -> tuple[list[str], list[list[Any]]]:
    """Column names and rows with geometries as WKT and other bytes as hex."""
    import shapely

    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        values = column.to_pylist()
        extension = (field.metadata or {}).get(b"ARROW:extension:name", b"")
        if extension == b"geoarrow.wkb":
            values = [None if v is None else shapely.from_wkb(v).wkt for v in values]
        elif pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            values = [None if v is None else "\\x" + bytes(v).hex() for v in values]
        columns.append(values)
    return table.schema.names, [list(row) for row in zip(*columns, strict=True)]
