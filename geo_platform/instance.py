"""The Dagster instance the CLI, the demo and `make dev` share."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geo_platform.settings import PlatformSettings, Profile, get_postgres_settings

if TYPE_CHECKING:
    import dagster as dg
    import psycopg

# The instance templates ship inside the package, so an installed (not editable)
# geo_platform finds them too.
_TEMPLATES = {
    Profile.EMBEDDED: "embedded.yaml",
    Profile.PRODUCTION: "production.yaml",
}
# First line of a dagster.yaml that geo_platform keeps current; delete it to keep
# hand edits (the file is then left alone).
MANAGED_MARKER = "# Managed by geo_platform (delete this line to keep your own edits)."


def instance_template(profile: Profile, dagster_home: Path) -> str:
    """The dagster.yaml of a profile, as geo_platform writes it into ``dagster_home``."""
    template = files("geo_platform.dagster_instance").joinpath(_TEMPLATES[profile]).read_text()
    return f"{MANAGED_MARKER}\n{template.replace('{dagster_home}', str(dagster_home))}"


def ensure_dagster_home(settings: PlatformSettings) -> Path:
    """Point DAGSTER_HOME at the profile's instance folder and give it the profile's
    dagster.yaml; for production, export the connection values that file reads."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    _write_config(home / "dagster.yaml", instance_template(settings.profile, home))
    os.environ["DAGSTER_HOME"] = str(home)
    if settings.profile is Profile.PRODUCTION:
        pg = get_postgres_settings()
        # dagster.yaml's `env:` values have no defaults: give them the settings' own.
        for name, value in {
            "GEO_PLATFORM_PG_HOST": pg.host,
            "GEO_PLATFORM_PG_PORT": str(pg.port),
            "GEO_PLATFORM_PG_USER": pg.user,
            "GEO_PLATFORM_PG_PASSWORD": pg.password.get_secret_value(),
            "GEO_PLATFORM_PG_DAGSTER_DATABASE": pg.dagster_database,
        }.items():
            os.environ.setdefault(name, value)
    return home


# The code location's name, as pyproject.toml's [tool.dg.project] gives it: Dagster warns
# at every load when the workspace names it otherwise.
CODE_LOCATION = "geo_platform"


def ensure_workspace(home: Path) -> Path:
    """The workspace file `geo-platform dev` starts Dagster with."""
    path = home / "workspace.yaml"
    _write_config(
        path,
        f"{MANAGED_MARKER}\n"
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: geo_platform.definitions\n"
        f"      location_name: {CODE_LOCATION}\n",
    )
    return path


def _write_config(path: Path, content: str) -> None:
    """Write ``content`` unless the file says the user owns it; atomically, so that a
    process starting at the same moment reads the old file or the new one."""
    try:
        current = path.read_text()
    except FileNotFoundError:
        current = None
    if current == content or (current is not None and not current.startswith(MANAGED_MARKER)):
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".dagster.yaml.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(content)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def get_instance(settings: PlatformSettings) -> dg.DagsterInstance:
    """The profile's Dagster instance, created and migrated by one process at a time."""
    import dagster as dg

    home = ensure_dagster_home(settings)
    # Dagster creates its tables and stamps their schema version when an instance first
    # loads, with no lock of its own: two processes doing it at once left SQLite with two
    # alembic heads or half-made tables. Loading is quick once the tables exist.
    with _instance_lock(home, settings.profile):
        return dg.DagsterInstance.get()


# Any fixed number: the advisory lock every geo_platform process takes to load the
# production instance.
_INSTANCE_LOCK_ID = 0x6765_6F70  # "geop"


@contextmanager
def _instance_lock(home: Path, profile: Profile) -> Iterator[None]:
    """Processes of this machine queue on a file lock in the instance folder; on
    production, processes of every machine also queue on an advisory lock in the Dagster
    database."""
    with open(home / ".instance.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            if profile is Profile.PRODUCTION:
                with _advisory_lock():
                    yield
            else:
                yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def connect_dagster_database(**options: Any) -> psycopg.Connection:
    """An autocommit connection to the production profile's Dagster database (for the
    platform's own advisory locks beside Dagster's tables)."""
    import psycopg

    pg = get_postgres_settings()
    return psycopg.connect(
        host=pg.host,
        port=pg.port,
        user=pg.user,
        password=pg.password.get_secret_value(),
        dbname=pg.dagster_database,
        autocommit=True,
        connect_timeout=10,
        **options,
    )


@contextmanager
def _advisory_lock() -> Iterator[None]:
    import psycopg

    try:
        conn = connect_dagster_database()
    except psycopg.OperationalError:
        # Dagster's own connection attempt reports the problem, with its retries.
        yield
        return
    with conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_INSTANCE_LOCK_ID,))
        yield


def add_partitions(instance: dg.DagsterInstance, partitions: str, keys: Iterable[str]) -> None:
    """Register ``keys`` as partitions of the dynamic set ``partitions``; keys another
    process registers at the same moment are fine (Dagster's own call fails on them)."""
    from sqlalchemy.exc import IntegrityError

    wanted = list(dict.fromkeys(keys))
    for attempt in range(5):
        known = set(instance.get_dynamic_partitions(partitions))
        new = [key for key in wanted if key not in known]
        if not new:
            return
        try:
            instance.add_dynamic_partitions(partitions, new)
            return
        except IntegrityError:
            if attempt == 4:
                raise
