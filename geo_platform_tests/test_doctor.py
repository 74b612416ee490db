import pytest
from click.testing import CliRunner

from geo_platform.cli import main
from geo_platform.settings import AZURITE_CONNECTION_STRING


def test_embedded_profile_is_healthy(settings):
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "profile: embedded"
    assert "ok    duckdb spatial" in result.output
    home = settings.dagster_home
    assert f"ok    dagster instance  SqliteRunStorage in {home}/history/runs.db" in result.output


@pytest.mark.integration
def test_production_profile_is_healthy_with_the_local_services(settings, monkeypatch):
    monkeypatch.setenv("GEO_PLATFORM_PROFILE", "production")
    monkeypatch.delenv("DAGSTER_HOME")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    for line in (
        "ok    blob storage      Azure Blob Storage at http://127.0.0.1:10000/devstoreaccount1; "
        "signed hrefs open",
        "ok    postgis           PostGIS 3",
        "ok    pgstac            pgSTAC 0.10",
    ):
        assert line in result.output
    assert "PooledRunStorage in postgresql://geo_platform:***@127.0.0.1:5432/" in result.output


@pytest.mark.integration
def test_wrong_password_and_stopped_storage_each_get_a_fix(settings, monkeypatch):
    monkeypatch.setenv("GEO_PLATFORM_PROFILE", "production")
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.setenv("GEO_PLATFORM_PG_PASSWORD", "wrong-secret-123")
    monkeypatch.setenv(
        "GEO_PLATFORM_AZURE_CONNECTION_STRING",
        AZURITE_CONNECTION_STRING.replace("127.0.0.1:10000", "127.0.0.1:1"),
    )
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    postgis = lines.index(next(line for line in lines if line.startswith("FAIL  postgis")))
    assert "password authentication failed" in lines[postgis]
    assert lines[postgis + 1].strip().startswith("fix: make services")
    assert any(
        line.startswith("FAIL  blob storage")
        and "http://127.0.0.1:1/devstoreaccount1 is unreachable" in line
        for line in lines
    )
    # Named with host and port, and without the retry warnings of the libraries underneath.
    assert any(
        line.startswith("FAIL  dagster instance  postgresql://geo_platform:***@127.0.0.1:5432/")
        and "password authentication failed" in line
        for line in lines
    )
    assert "Retrying" not in result.output and "WARNING" not in result.output
    assert "wrong-secret-123" not in result.output
    assert "Eby8vdM02xNOcqFl" not in result.output, "the account key never shows"
