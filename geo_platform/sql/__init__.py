"""DDL shipped with the package: numbered, idempotent files per backend."""

from importlib.resources import files

# First line of a migration that needs DuckDB's spatial extension loaded.
REQUIRES_SPATIAL = "-- requires: spatial"


def read_sql(backend: str, name: str) -> str:
    """The text of ``<backend>/<name>``, from the installed package or a checkout."""
    return files(__package__).joinpath(backend, name).read_text()


def migrations(backend: str) -> list[tuple[int, str, str]]:
    """``(number, name, sql)`` of ``<backend>/NNN_*.sql``, in order."""
    found = []
    for entry in files(__package__).joinpath(backend).iterdir():
        number, _, _ = entry.name.partition("_")
        if entry.name.endswith(".sql") and number.isdigit():
            found.append((int(number), entry.name, entry.read_text()))
    return sorted(found)
