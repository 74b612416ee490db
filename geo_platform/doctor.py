"""`geo-platform doctor`: can the active profile run here? One line per check, with a fix."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from geo_platform.settings import (
    PlatformSettings,
    Profile,
    get_azure_settings,
    get_postgres_settings,
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str = ""


Check = Callable[[PlatformSettings], CheckResult]


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
    try:
        from geo_platform.instance import get_instance

        instance = get_instance(settings)
        instance.get_runs(limit=1)
        storage = type(instance.run_storage).__name__
    except Exception as e:  # noqa: BLE001
        return CheckResult(
            "dagster instance",
            False,
            str(e).splitlines()[0][:200],
            "check DAGSTER_HOME and its dagster.yaml; production: make services",
        )
    return CheckResult("dagster instance", True, f"{storage} in {os.environ.get('DAGSTER_HOME')}")


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
    try:
        from azure.storage.blob import BlobServiceClient

        client = BlobServiceClient.from_connection_string(
            get_azure_settings().connection_string.get_secret_value(),
            retry_total=0,
            connection_timeout=5,
        )
        endpoint = client.url
        next(iter(client.list_containers(results_per_page=1)), None)
    except Exception as e:  # noqa: BLE001
        return CheckResult(
            "blob storage",
            False,
            _first_line(e)[:200],
            "make services (Azurite), or set GEO_PLATFORM_AZURE_CONNECTION_STRING",
        )
    return CheckResult("blob storage", True, f"Azure Blob Storage at {endpoint}")


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
    return [check(settings) for check in checks_for(settings.profile)]


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
