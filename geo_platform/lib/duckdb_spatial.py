"""DuckDB connections with the spatial extension, loaded offline from its PyPI package."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import duckdb


@cache
def spatial_extension_path() -> str:
    import duckdb_extension_spatial

    package = Path(duckdb_extension_spatial.__file__).parent
    found = sorted(package.glob("extensions/**/spatial.duckdb_extension"))
    if not found:
        raise RuntimeError(f"no spatial.duckdb_extension inside {package}")
    return str(found[-1])


def load_spatial(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Load spatial from its PyPI package; INSTALL from the network is never needed."""
    con.execute(f"LOAD '{spatial_extension_path()}'")
    return con
