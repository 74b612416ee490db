"""Hostile STAC items: each rejected alone, by line, with the same rule on both catalogs;
the rest of the file loads, and every search still works afterwards."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

from geo_platform.cli import main
from geo_platform.errors import InvalidInputError
from geo_platform.lib.stac import load as load_module
from geo_platform.lib.stac.geojson import geometry_problem, invalid_geometry_reasons
from geo_platform.lib.stac.load import KEPT_REJECTIONS, MAX_LINE_BYTES, load_ndjson
from geo_platform.resources.duckdb_catalog import DuckDBCatalog
from geo_platform.resources.pgstac_catalog import PgstacCatalog
from geo_platform.resources.stac_catalog import StacCatalog

WORLD = (-180.0, -90.0, 180.0, 90.0)


@pytest.fixture(
    params=[
        pytest.param("duckdb", marks=pytest.mark.unit),
        pytest.param("pgstac", marks=pytest.mark.integration),
    ]
)
def catalog(request: pytest.FixtureRequest, tmp_path: Path, naip_collection) -> StacCatalog:
    """An empty catalog of each kind, with the NAIP collection."""
    if request.param == "duckdb":
        catalog: StacCatalog = DuckDBCatalog(path=str(tmp_path / "catalog.duckdb"))
    else:
        dsn = request.getfixturevalue("pgstac_dsn")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DELETE FROM pgstac.collections")
        catalog = PgstacCatalog(dsn=dsn)
    catalog.upsert_collection(naip_collection)
    return catalog


@pytest.fixture(scope="module")
def naip_items(real_stac: Path) -> list[dict[str, Any]]:
    lines = (real_stac / "naip-items.ndjson").read_text().splitlines()
    return [json.loads(line) for line in lines[:40]]


@pytest.fixture(scope="module")
def naip_collection(real_stac: Path) -> dict[str, Any]:
    return json.loads((real_stac / "naip-collection.json").read_text())


def _polygon(*ring: tuple[float, float]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [[list(p) for p in ring]]}


def _hostile(base: dict[str, Any], item_id: str, **changes: Any) -> dict[str, Any]:
    item = copy.deepcopy(base)
    item["id"] = item_id
    for key, value in changes.items():
        if key == "properties":
            item["properties"].update(value)
        else:
            item[key] = value
    return item


# name -> (changes to a good item, what the rejection says)
HOSTILE = {
    "unclosed ring": (
        {"geometry": _polygon((0, 0), (1, 0), (1, 1), (0, 1))},
        "polygon ring not closed: it starts at [0,0] and ends at [0,1]",
    ),
    "bow-tie": (
        {"geometry": _polygon((0, 0), (1, 1), (1, 0), (0, 1), (0, 0))},
        "Self-intersection[0.5 0.5] (not repaired)",
    ),
    "latitude 100": (
        {"geometry": _polygon((0, 0), (1, 0), (1, 100), (0, 0))},
        "latitude 100 outside [-90, 90]",
    ),
    "longitude 200": (
        {"geometry": {"type": "Point", "coordinates": [200, 0]}},
        "longitude 200 outside [-180, 180]",
    ),
    "ring of three positions": (
        {"geometry": _polygon((0, 0), (1, 0), (0, 0))},
        "polygon ring with 3 positions (at least 4)",
    ),
    "empty polygon": (
        {"geometry": {"type": "Polygon", "coordinates": []}},
        "Polygon without coordinates (empty)",
    ),
    "text coordinate": (
        {"geometry": {"type": "Point", "coordinates": ["10", 0]}},
        'position ["10",0] holds something other than numbers',
    ),
    "invalid geometry type": (
        {"geometry": {"type": "Circle", "coordinates": [0, 0], "radius": 1}},
        "type 'Circle' is not one of Point",
    ),
    "NUL in the id": ({"id": "bad\x00id"}, "has a control character ('\\x00') in its id"),
    "escape in the id": ({"id": "bad\x1b[31mred"}, "has a control character ('\\x1b') in its id"),
    "2 kB id": ({"id": "x" * 2000}, "has an id of 2000 bytes (at most 1024)"),
    "NUL in a property": (
        {"properties": {"title": "nul\x00here"}},
        "has a NUL character (\\u0000) in a string",
    ),
}


def _write(path: Path, lines: list[dict[str, Any] | str | bytes]) -> Path:
    with path.open("wb") as out:
        for line in lines:
            text = json.dumps(line) if isinstance(line, dict) else line
            out.write((text.encode() if isinstance(text, str) else text) + b"\n")
    return path


def _ids(catalog: StacCatalog, bbox: tuple[float, float, float, float] = WORLD) -> list[str]:
    return sorted(item["id"] for item in catalog.search(bbox=bbox, limit=None))


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_item_is_rejected_alone_and_the_rest_of_its_batch_loads(
    catalog, naip_items, tmp_path, case
):
    changes, reason = HOSTILE[case]
    bad = _hostile(naip_items[0], f"hostile-{case}", **changes)
    path = _write(tmp_path / "items.ndjson", [naip_items[1], bad, naip_items[2]])
    report = load_ndjson(catalog, path)
    assert (report.loaded, report.rejected_count) == (2, 1)
    ((line, item_id, why),) = report.rejected
    # Ids are kept cut to 300 characters: a rejected id can be as long as a line.
    assert (line, item_id) == (2, bad["id"] if len(bad["id"]) <= 300 else "x" * 297 + "...")
    assert reason in why
    expected = sorted([naip_items[1]["id"], naip_items[2]["id"]])
    assert _ids(catalog) == expected
    # Where the bad geometries would have been, and around the good ones.
    assert _ids(catalog, (-1, -1, 2, 2)) == []
    assert _ids(catalog, (-88, 30, -85, 35)) == expected


def test_a_file_mixing_good_and_bad_lines_loads_every_good_line(catalog, naip_items, tmp_path):
    bad = [
        _hostile(naip_items[0], f"hostile-{n}", **changes)
        for n, (changes, _) in enumerate(HOSTILE.values())
    ]
    good = naip_items[:20]
    # Batches of 3 lines or fewer: some all good, some mixed, some all bad.
    lines: list[Any] = [
        good[0],
        bad[0],
        bad[1],
        bad[2],
        good[1],
        "",
        good[2],
        "{not json",
        *bad[3:8],
        *good[3:12],
        *bad[8:],
        *good[12:],
    ]
    path = _write(tmp_path / "mixed.ndjson", lines)
    report = load_ndjson(catalog, path, batch_size=3)
    assert (report.loaded, report.skipped, report.rejected_count) == (20, 0, len(bad) + 1)
    rejected_lines = [r.line for r in report.rejected]
    assert rejected_lines == [2, 3, 4, 8, 9, 10, 11, 12, 13, 23, 24, 25, 26]
    assert report.rejected[3].reason.startswith("malformed JSON")
    assert _ids(catalog) == sorted(item["id"] for item in good)
    assert len(catalog.search(limit=None)) == 20
    again = load_ndjson(catalog, path, method="ignore", batch_size=3)
    assert (again.loaded, again.skipped, again.rejected_count) == (0, 20, len(bad) + 1)


def test_items_written_directly_are_checked_by_the_same_rule(catalog, naip_items):
    bow_tie = _hostile(naip_items[0], "bow-tie", **HOSTILE["bow-tie"][0])
    with pytest.raises(InvalidInputError, match=r"'bow-tie'.*Self-intersection"):
        catalog.upsert_items([naip_items[1], bow_tie])
    assert catalog.search(limit=None) == []


@pytest.mark.unit
def test_rejections_kept_are_the_first_by_line_and_all_are_counted(
    naip_items, naip_collection, tmp_path
):
    catalog = DuckDBCatalog(path=str(tmp_path / "catalog.duckdb"))
    catalog.upsert_collection(naip_collection)
    bow_tie = _hostile(naip_items[0], "bow-tie", **HOSTILE["bow-tie"][0])
    # The bow-tie is found when its batch is checked by GEOS, after the garbage below it;
    # a line over the limit is skipped unread.
    huge = b'{"id": "huge", "pad": "' + b"x" * MAX_LINE_BYTES + b'"}'
    garbage = [f"garbage {n}" for n in range(5000)]
    lines = [naip_items[0], bow_tie, huge, *garbage, naip_items[1]]
    report = load_ndjson(catalog, _write(tmp_path / "garbage.ndjson", lines), batch_size=10)
    assert (report.loaded, report.rejected_count) == (2, 5002)
    assert len(report.rejected) == KEPT_REJECTIONS
    assert [r.line for r in report.rejected] == list(range(2, KEPT_REJECTIONS + 2))
    assert report.rejected[0].item_id == "bow-tie"
    assert report.rejected[1].reason == f"longer than {MAX_LINE_BYTES:,} bytes, not read"
    assert report.rejected[2].reason.startswith("malformed JSON")
    assert _ids(catalog) == sorted([naip_items[0]["id"], naip_items[1]["id"]])


@pytest.mark.unit
def test_cli_escapes_control_characters_and_counts_every_rejection(
    settings, real_stac, naip_items, tmp_path, monkeypatch
):
    monkeypatch.setattr(load_module, "KEPT_REJECTIONS", 3)
    escape = _hostile(naip_items[0], "red\x1b[31m")
    path = _write(tmp_path / "items.ndjson", [escape, naip_items[0], "{", "[", "1", "2"])
    result = CliRunner().invoke(
        main,
        ["stac", "load", str(path), "--collection", str(real_stac / "naip-collection.json")],
    )
    assert result.exit_code == 1
    assert "\x1b" not in result.output
    assert "rejected line 1 item red\\x1b[31m: has a control character ('\\x1b')" in result.output
    assert "... and 2 more rejected lines" in result.output
    assert "1 loaded, 0 skipped, 5 rejected" in result.output


@pytest.mark.integration
def test_pgstac_search_over_an_unreadable_geometry_stored_earlier_says_how_to_find_it(
    pgstac_dsn, naip_collection, naip_items
):
    with psycopg.connect(pgstac_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM pgstac.collections")
    catalog = PgstacCatalog(dsn=pgstac_dsn)
    catalog.upsert_collection(naip_collection)
    catalog.upsert_items([naip_items[0]])
    # As an earlier version, or pypgstac itself, would store it: no check on the way.
    unclosed = _hostile(naip_items[1], "unclosed", **HOSTILE["unclosed ring"][0])
    with PgstacDB(dsn=pgstac_dsn) as db:
        Loader(db).load_items(iter([unclosed]), insert_mode=Methods.insert)
    with pytest.raises(InvalidInputError, match="cannot be read by PostGIS") as raised:
        catalog.search(bbox=WORLD)
    find = re.search(r"find such items with '(.*)', then", str(raised.value))
    assert find is not None
    with psycopg.connect(pgstac_dsn, autocommit=True) as conn:
        assert conn.execute(find[1]).fetchall() == [("naip", "unclosed")]


@pytest.mark.unit
def test_the_geometry_rule_over_every_geojson_type():
    square = [[0, 0], [2, 0], [2, 2], [0, 2], [0, 0]]
    square_3d = [[*position, 5.0] for position in square]
    bow_tie = [[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]
    far_hole = [[5, 5], [6, 5], [6, 6], [5, 5]]
    geometries = {
        "point": ({"type": "Point", "coordinates": [180, -90]}, None),
        "line": ({"type": "LineString", "coordinates": [[0, 0], [1, 1.5, 3]]}, None),
        "polygon with heights": ({"type": "Polygon", "coordinates": [square_3d]}, None),
        "hole outside": (
            {"type": "Polygon", "coordinates": [square, far_hole]},
            "Hole lies outside shell",
        ),
        "overlapping parts": (
            {"type": "MultiPolygon", "coordinates": [[square], [square_3d]]},
            "Self-intersection",
        ),
        "collection": (
            {
                "type": "GeometryCollection",
                "geometries": [{"type": "Polygon", "coordinates": [bow_tie]}],
            },
            "Self-intersection[0.5 0.5]",
        ),
        "one-position line": (
            {"type": "LineString", "coordinates": [[0, 0]]},
            "LineString with 1 positions (at least 2)",
        ),
        "true as a coordinate": (
            {"type": "Point", "coordinates": [True, 0]},
            "holds something other than numbers",
        ),
        "NaN height": (
            {"type": "Point", "coordinates": [0, 0, float("nan")]},
            "height that is not a finite number",
        ),
        "empty collection": (
            {"type": "GeometryCollection", "geometries": []},
            "GeometryCollection without geometries (empty)",
        ),
        "no coordinates": ({"type": "MultiPolygon"}, "MultiPolygon coordinates are not an array"),
    }
    first_pass = {name: geometry_problem(g) for name, (g, _) in geometries.items()}
    passed = [name for name, problem in first_pass.items() if problem is None]
    reasons = dict(
        zip(passed, invalid_geometry_reasons([geometries[n][0] for n in passed]), strict=True)
    )
    for name, (_, expected) in geometries.items():
        found = first_pass[name] or reasons[name]
        if expected is None:
            assert found is None, name
        else:
            assert found is not None and expected in found, (name, found)
