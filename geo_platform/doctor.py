"""`geo-platform doctor`: can the active profile run here? One line per check, with a fix."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from geo_platform.settings import (
    PlatformSettings,
    Profile,
    get_postgres_settings,
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""


Check = Callable[[PlatformSettings], CheckResult]
# Written, signed, read back without credentials and deleted by the blob storage check.
_PROBE_KEY = ".doctor/signed-href-probe.txt"


def check_data_dir(settings: PlatformSettings) -> CheckResult:
    path = settings.data_dir.resolve()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".doctor-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        return CheckResult(
            "data dir",
            False,
            f"{path}: {e.strerror}",
            "set GEO_PLATFORM_DATA_DIR to a writable folder",
        )
    return CheckResult("data dir", True, str(path))


def check_duckdb_spatial(settings: PlatformSettings) -> CheckResult:
    try:
        import duckdb

        from geo_platform.lib.duckdb_spatial import load_spatial

        con = duckdb.connect()
        load_spatial(con)
        version = con.execute(
            "SELECT extension_version FROM duckdb_extensions() WHERE extension_name = 'spatial'"
        ).fetchone()
        con.close()
    except Exception as e:  # noqa: BLE001 - any failure here is the finding
        return CheckResult(
            "duckdb spatial",
            False,
            str(e).splitlines()[0],
            "reinstall: .venv/bin/pip install duckdb==1.5.5 duckdb-extension-spatial==1.5.5",
        )
    return CheckResult(
        "duckdb spatial",
        True,
        f"duckdb {duckdb.__version__}, spatial {version[0] if version else '?'}",
    )


def check_dagster_instance(settings: PlatformSettings) -> CheckResult:
    fix = "check DAGSTER_HOME and its dagster.yaml; production: make services"
    where = _dagster_database(settings)
    if settings.profile is Profile.PRODUCTION:
        # Dagster retries a refused connection for a minute: ask the server first.
        pg = get_postgres_settings()
        try:
            import psycopg

            psycopg.connect(pg.dsn(pg.dagster_database), connect_timeout=5).close()
        except Exception as e:  # noqa: BLE001 - any failure here is the finding
            return CheckResult("dagster instance", False, f"{where}: {_first_line(e)}", fix)
    try:
        from geo_platform.instance import get_instance

        instance = get_instance(settings)
        instance.get_runs(limit=1)
        storage = type(instance.run_storage).__name__
    except Exception as e:  # noqa: BLE001
        return CheckResult("dagster instance", False, f"{where}: {_first_line(e)[:200]}", fix)
    return CheckResult("dagster instance", True, f"{storage} in {where}")


def _dagster_database(settings: PlatformSettings) -> str:
    """Where the instance keeps runs and events, as a user would look for it."""
    if settings.profile is Profile.PRODUCTION:
        pg = get_postgres_settings()
        return pg.redacted_dsn(pg.dagster_database)
    home = os.environ.get("DAGSTER_HOME") or str(settings.dagster_home)
    return f"{home}/history/runs.db"


def _postgres_check(name: str, query: str, describe: Callable[[str], str], fix: str) -> CheckResult:
    """Run one query on the platform database; its answer, or the failure, is the finding."""
    pg = get_postgres_settings()
    try:
        import psycopg

        with psycopg.connect(pg.dsn(), connect_timeout=5) as con:
            row = con.execute(query).fetchone()
    except Exception as e:  # noqa: BLE001 - any failure here is the finding
        return CheckResult(name, False, f"{pg.redacted_dsn()}: {_first_line(e)}", fix)
    if row is None or row[0] is None:
        return CheckResult(name, False, f"{pg.redacted_dsn()}: the query returned nothing", fix)
    return CheckResult(name, True, describe(str(row[0])))


def check_postgis(settings: PlatformSettings) -> CheckResult:
    pg = get_postgres_settings()
    return _postgres_check(
        "postgis",
        "SELECT postgis_lib_version()",
        lambda version: f"PostGIS {version} at {pg.redacted_dsn()}",
        "make services (or set GEO_PLATFORM_PG_HOST/PORT/USER/PASSWORD/DATABASE)",
    )


def check_pgstac(settings: PlatformSettings) -> CheckResult:
    return _postgres_check(
        "pgstac",
        "SELECT pgstac.get_version()",
        lambda version: f"pgSTAC {version}",
        "make services, or: pypgstac migrate --dsn postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
    )


def check_azure(settings: PlatformSettings) -> CheckResult:
    """The account answers, and a freshly signed href opens with no credentials (what
    `stac search --sign` hands to GDAL and QGIS)."""
    from geo_platform.backends import blob_store
    from geo_platform.resources.azure_blob_store import AzureBlobStore

    fix = "make services (Azurite), or set GEO_PLATFORM_AZURE_CONNECTION_STRING"
    try:
        store = blob_store(settings)
        assert isinstance(store, AzureBlobStore)
        endpoint = store.endpoint()
    except Exception as e:  # noqa: BLE001
        return CheckResult("blob storage", False, _first_line(e)[:200], fix)
    try:
        signed = _signed_probe(store)
    except Exception as e:  # noqa: BLE001
        message = _first_line(e)[:300]
        detail = message if endpoint in message else f"{endpoint}: {message}"
        return CheckResult("blob storage", False, detail, fix)
    return CheckResult("blob storage", True, f"Azure Blob Storage at {endpoint}; {signed}")


def _signed_probe(store: Any) -> str:
    import datetime as dt
    import tempfile
    import urllib.request
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        probe = Path(folder) / "probe.txt"
        probe.write_text("geo_platform doctor\n")
        store.upload_file(probe, "silver", _PROBE_KEY)
    try:
        href = store.sign_href(store.href("silver", _PROBE_KEY), dt.timedelta(minutes=5))
        with urllib.request.urlopen(href, timeout=10) as response:
            body = response.read()
        if body != b"geo_platform doctor\n":
            raise ValueError("a signed href answered with other bytes")
    finally:
        store.delete("silver", _PROBE_KEY)
    return "signed hrefs open"


def checks_for(profile: Profile) -> list[Check]:
    if profile is Profile.PRODUCTION:
        return [
            check_azure,
            check_postgis,
            check_pgstac,
            check_duckdb_spatial,
            check_dagster_instance,
        ]
    return [check_data_dir, check_duckdb_spatial, check_dagster_instance]


def run_checks(settings: PlatformSettings) -> list[CheckResult]:
    # The libraries underneath log their retries (Dagster's on the root logger); the
    # check's own line says what failed.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        return [check(settings) for check in checks_for(settings.profile)]
    finally:
        root.setLevel(level)


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
