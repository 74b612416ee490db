"""The Dagster instance the CLI, the demo and `make dev` share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from geo_platform.settings import PlatformSettings, Profile, get_postgres_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTANCE_CONFIG = {
    Profile.EMBEDDED: REPO_ROOT / "dagster.yaml",
    Profile.PRODUCTION: REPO_ROOT / "dagster.production.yaml",
}


def ensure_dagster_home(settings: PlatformSettings) -> Path:
    """Point DAGSTER_HOME at the profile's instance folder and give it the profile's
    dagster.yaml; for production, export the connection values that file reads."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(INSTANCE_CONFIG[settings.profile], config)
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


def get_instance(settings: PlatformSettings) -> dg.DagsterInstance:
    ensure_dagster_home(settings)
    return dg.DagsterInstance.get()
