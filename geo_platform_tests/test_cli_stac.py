"""`geo-platform stac load` and `stac search` give the same answers on both profiles."""

import json
import subprocess
import sys

import psycopg
import pytest
from click.testing import CliRunner

from geo_platform.cli import main

pytestmark = pytest.mark.integration

QUERIES = [
    [],
    ["--bbox", "-86.5,30.5,-85.5,31"],
    ["--bbox", "-88,30.2,-87.8,30.4", "--datetime", "2011-01-01/2013-12-31"],
    ["--datetime", "2015-08-27"],
    ["--datetime", "../2012-01-01T00:00:00Z"],
    ["--query", '{"naip:year": {"eq": "2015"}}', "--bbox", "-86,30.5,-85,31"],
    ["--query", '{"gsd": {"gte": 1}}', "--collection", "naip"],
    ["--collection", "nothing-here"],
]


def _search(runner: CliRunner, args: list[str]) -> list[str]:
    result = runner.invoke(main, ["stac", "search", "--limit", "1000", *args])
    assert result.exit_code == 0, result.output
    return [feature["id"] for feature in json.loads(result.output)["features"]]


def test_load_and_search_agree_on_both_profiles(
    settings, real_stac, pgstac_database, pgstac_dsn, monkeypatch
):
    items = real_stac / "naip-items.ndjson"
    collection = real_stac / "naip-collection.json"
    runner = CliRunner()
    answers = {}
    for profile in ("embedded", "production"):
        monkeypatch.setenv("GEO_PLATFORM_PROFILE", profile)
        monkeypatch.setenv("GEO_PLATFORM_PG_DATABASE", pgstac_database)
        if profile == "production":
            with psycopg.connect(pgstac_dsn, autocommit=True) as conn:
                conn.execute("DELETE FROM pgstac.collections")
        loaded = runner.invoke(main, ["stac", "load", str(items), "--collection", str(collection)])
        assert loaded.exit_code == 0, loaded.output
        assert loaded.output.startswith("1000 loaded, 0 skipped, 0 rejected")
        again = runner.invoke(main, ["stac", "load", str(items), "--method", "ignore"])
        assert again.output.startswith("0 loaded, 1000 skipped, 0 rejected"), again.output
        answers[profile] = [_search(runner, query) for query in QUERIES]
    assert answers["embedded"] == answers["production"]
    assert len(answers["embedded"][0]) == 1000
    assert all(answers["embedded"][1:-1]), "every query but the last finds something"


def test_bad_lines_are_rejected_by_line_and_the_rest_loaded(settings, real_stac, tmp_path):
    good = (real_stac / "naip-items.ndjson").read_text().splitlines()[:3]
    no_geometry = json.loads(good[0]) | {"id": "no-geometry", "geometry": None}
    path = tmp_path / "mixed.ndjson"
    path.write_text("\n".join([good[0], "{not json", json.dumps(no_geometry), *good[1:]]) + "\n")
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["stac", "load", str(path), "--collection", str(real_stac / "naip-collection.json")],
    )
    assert result.exit_code == 1
    assert "3 loaded, 0 skipped, 2 rejected" in result.output
    assert "rejected line 2: malformed JSON" in result.output
    assert "rejected line 3 item no-geometry:" in result.output


@pytest.mark.unit
def test_stac_commands_start_without_dagster_or_rasterio():
    # Start-up time is most of a small load or a search: pypgstac's own CLI starts in
    # ~0.4 s, and importing Dagster alone takes ~0.6 s more; pyarrow and shapely
    # (~0.1-0.2 s each) are imported only by the writes and geometry tests that use them.
    modules = [
        "geo_platform.cli",
        "geo_platform.backends",
        "geo_platform.lib.stac.load",
        "geo_platform.resources.pgstac_catalog",
        "geo_platform.resources.duckdb_catalog",
    ]
    code = (
        f"import sys, {', '.join(modules)}; "
        "heavy = ('dagster', 'rasterio', 'pandas', 'pyarrow', 'shapely'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
