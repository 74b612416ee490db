"""DDL shipped with the package: numbered, idempotent files per backend."""

from importlib.resources import files


def read_sql(backend: str, name: str) -> str:
    """The text of ``<backend>/<name>``, from the installed package or a checkout."""
    return files(__package__).joinpath(backend, name).read_text()
