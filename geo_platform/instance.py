"""The Dagster instance the CLI, the demo and `make dev` share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from geo_platform.settings import PlatformSettings

REPO_ROOT = Path(__file__).resolve().parents[1]


def ensure_dagster_home(settings: PlatformSettings) -> Path:
    """Point DAGSTER_HOME at the settings' instance folder and give it our dagster.yaml."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        shutil.copyfile(REPO_ROOT / "dagster.yaml", config)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance(settings: PlatformSettings) -> dg.DagsterInstance:
    ensure_dagster_home(settings)
    return dg.DagsterInstance.get()
