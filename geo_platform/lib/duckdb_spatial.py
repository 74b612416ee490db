"""DuckDB connections with the spatial extension, loaded offline from its PyPI package."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import duckdb


@cache
def spatial_extension_path() -> str:
    import duckdb_extension_spatial

    return _extension_in(Path(duckdb_extension_spatial.__file__).parent, "spatial")


@cache
def postgres_extension_path() -> str:
    """DuckDB's postgres extension from its PyPI package (``postgres_scanner`` is the name
    its entry point answers to; the ``duckdb-extension-postgres`` file does not load)."""
    import duckdb_extension_postgres_scanner

    return _extension_in(
        Path(duckdb_extension_postgres_scanner.__file__).parent, "postgres_scanner"
    )


def _extension_in(package: Path, name: str) -> str:
    found = sorted(package.glob(f"extensions/**/{name}.duckdb_extension"))
    if not found:
        raise RuntimeError(f"no {name}.duckdb_extension inside {package}")
    return str(found[-1])


def load_spatial(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Load spatial from its PyPI package; INSTALL from the network is never needed."""
    con.execute(f"LOAD '{spatial_extension_path()}'")
    return con


def quote_identifier(name: str) -> str:
    """A DuckDB identifier, always quoted: the one way names reach DuckDB SQL here."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """A DuckDB string literal, for the few places a parameter cannot go (struct keys)."""
    return "'" + text.replace("'", "''") + "'"


def compose(template: str, **identifiers: str) -> str:
    """``template`` (a constant) with ``{name}`` placeholders filled by quoted identifiers."""
    return template.format(**{k: quote_identifier(v) for k, v in identifiers.items()})
