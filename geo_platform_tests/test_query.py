"""geo-platform query: read-only SQL over the platform's tables on both profiles."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from geo_platform.backends import warehouse
from geo_platform.cli import main
from geo_platform.ingest import ingest

from . import vector_inputs as inputs

pytestmark = pytest.mark.asset
TABLE = "q__countries_zip__naturalearth_lowres"


def _query(*args: str):
    return CliRunner().invoke(main, ["query", *args])


def _files(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_query_reads_tables_and_refuses_everything_else(profile_settings, tmp_path: Path):
    settings = profile_settings
    source = inputs.shapefile_zip(tmp_path / "countries.zip")
    assert ingest([source], collection="q", output_tier=None, settings=settings)[0].ok

    result = _query(
        f"SELECT name, continent FROM vector.{TABLE} "
        "WHERE name IN ('France', 'Peru') ORDER BY name",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [
        {"name": "France", "continent": "Europe"},
        {"name": "Peru", "continent": "South America"},
    ]
    csv_out = _query(f"SELECT count(*) AS n FROM vector.{TABLE}", "--format", "csv")
    assert csv_out.output == "n\n177\n"
    spatial = _query(
        f"SELECT name, ST_AsText(ST_Centroid(geom)) AS c FROM vector.{TABLE} "
        "WHERE ST_Contains(geom, ST_Point(2.35, 48.85))"
    )
    assert spatial.exit_code == 0 and "France" in spatial.output and "(1 row)" in spatial.output

    data_before = _files(settings.data_dir)
    tables_before = warehouse(settings).tables("vector")
    refused = {
        f"DELETE FROM vector.{TABLE}": "DELETE statements are not allowed",
        f"DROP TABLE vector.{TABLE}": "DROP statements are not allowed",
        "CREATE TABLE t AS SELECT 1": "CREATE statements are not allowed",
        "ATTACH 'other.duckdb' AS o": "ATTACH statements are not allowed",
        "INSTALL httpfs": "not allowed",
        "LOAD spatial": "not allowed",
        f"COPY vector.{TABLE} TO 'out.csv'": "COPY statements are not allowed",
        "SET enable_external_access = true": "SET statements are not allowed",
        "SELECT * FROM read_text('/etc/passwd')": "file system operations are disabled",
        f"SELECT * FROM read_csv('{tmp_path}/x.csv')": "file system operations are disabled",
        "SELECT * FROM postgres_query('warehouse', 'SELECT 1')": "postgres_query() is not allowed",
        "SELECT 1; DROP TABLE x": "DROP statements are not allowed",
        "SELEC 1": "not valid SQL",
    }
    for sql, message in refused.items():
        result = _query(sql)
        assert result.exit_code == 1, sql
        assert message in result.output, (sql, result.output)
        assert "Traceback" not in result.output
    assert not (Path.cwd() / "out.csv").exists()
    assert warehouse(settings).tables("vector") == tables_before
    assert warehouse(settings).row_count("vector", TABLE) == 177
    assert _files(settings.data_dir) == data_before
