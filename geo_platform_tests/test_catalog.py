import json

import pytest

from geo_platform.errors import InvalidInputError
from geo_platform.lib.stac.bbox import union_bbox
from geo_platform.lib.stac.search import parse_datetime_interval
from geo_platform.resources.duckdb_catalog import DuckDBCatalog

pytestmark = pytest.mark.unit


@pytest.fixture
def naip(real_stac, tmp_path):
    catalog = DuckDBCatalog(path=str(tmp_path / "catalog.duckdb"))
    catalog.upsert_collection(json.loads((real_stac / "naip-collection.json").read_text()))
    items = [json.loads(line) for line in (real_stac / "naip-items.ndjson").open()]
    catalog.upsert_items(items)
    return catalog, items


def _bbox_intersects(a, b):
    return a[0] <= b[2] and a[2] >= b[0] and a[1] <= b[3] and a[3] >= b[1]


def test_upsert_twice_leaves_one_item_each(naip):
    catalog, items = naip
    catalog.upsert_items(items[:10])
    assert len(catalog.search(limit=None)) == len(items) == 1000


def test_bbox_and_datetime_search_match_a_brute_force_answer(naip):
    catalog, items = naip
    bbox = (-86.5, 31.0, -85.5, 32.0)
    found = catalog.search(bbox=bbox, datetime="2015-01-01/2016-12-31", limit=None)
    expected = {
        i["id"]
        for i in items
        if _bbox_intersects(i["bbox"], bbox)
        and "2015-01-01" <= i["properties"]["datetime"][:10] <= "2016-12-31"
    }
    assert found and {i["id"] for i in found} <= expected
    # Envelope intersection is a superset of geometry intersection: close, not equal.
    assert len(found) >= 0.8 * len(expected)
    datetimes = [i["properties"]["datetime"] for i in found]
    assert datetimes == sorted(datetimes, reverse=True)


def test_open_ended_ranges_collections_and_limit(naip):
    catalog, items = naip
    newest = max(i["properties"]["datetime"] for i in items)
    assert {i["properties"]["datetime"] for i in catalog.search(datetime=f"{newest}/..")} == {
        newest
    }
    assert catalog.search(collections=["nothing-here"]) == []
    assert len(catalog.search(collections=[items[0]["collection"]], limit=7)) == 7


def test_unknown_collection_and_bad_items_are_rejected_whole(naip, tmp_path):
    catalog, items = naip
    stranger = dict(items[0], id="new-one", collection="unknown")
    with pytest.raises(InvalidInputError, match="unknown collection"):
        catalog.upsert_items([dict(items[1], id="also-new"), stranger])
    assert catalog.get_item(items[1]["collection"], "also-new") is None
    no_geometry = dict(items[0], geometry=None)
    with pytest.raises(InvalidInputError, match="no geometry"):
        catalog.upsert_items([no_geometry])


def test_datetime_parsing():
    interval = parse_datetime_interval("2020-01-01T00:00:00Z/..")
    assert interval.start.year == 2020 and interval.end is None
    day = parse_datetime_interval("2020-01-01")
    assert (day.end - day.start).days == 1 and not day.end_inclusive
    with pytest.raises(ValueError, match="ends before it starts"):
        parse_datetime_interval("2021-01-01/2020-01-01")


def test_a_catalog_written_before_wkb_geometry_is_migrated_with_its_items(real_stac, tmp_path):
    """A catalog file from before 002 (GEOMETRY column, no migration record) keeps its
    items, and they are found by the same searches as when loaded today."""
    import duckdb

    from geo_platform.lib.duckdb_spatial import load_spatial
    from geo_platform.sql import read_sql

    collection = json.loads((real_stac / "naip-collection.json").read_text())
    items = [json.loads(line) for line in (real_stac / "naip-items.ndjson").open()][:50]
    old = tmp_path / "old.duckdb"
    with load_spatial(duckdb.connect(str(old))) as con:
        con.execute(read_sql("duckdb", "001_stac_catalog.sql"))
        con.execute(
            "INSERT INTO collections VALUES (?, ?, now())", ["naip", json.dumps(collection)]
        )
        for item in items:
            start = item["properties"]["datetime"]
            con.execute(
                "INSERT INTO items SELECT ?, ?, ?, ?, ?, ST_XMin(g), ST_YMin(g), ST_XMax(g), "
                "ST_YMax(g), g, ?, now() FROM (SELECT ST_GeomFromGeoJSON(?) AS g)",
                [
                    item["collection"],
                    item["id"],
                    start,
                    start,
                    start,
                    json.dumps(item),
                    json.dumps(item["geometry"]),
                ],
            )
    fresh = DuckDBCatalog(path=str(tmp_path / "fresh.duckdb"))
    fresh.upsert_collection(collection)
    fresh.upsert_items(items)
    migrated = DuckDBCatalog(path=str(old))
    bbox = (-86.5, 31.0, -85.5, 32.0)
    assert [i["id"] for i in migrated.search(limit=None)] == [
        i["id"] for i in fresh.search(limit=None)
    ]
    found = [i["id"] for i in migrated.search(bbox=bbox, limit=None)]
    assert found and found == [i["id"] for i in fresh.search(bbox=bbox, limit=None)]
    assert migrated.get_item("naip", items[0]["id"]) == items[0]
    # The items' bboxes, copied into their own column by 003, give the extent.
    assert (
        migrated.collection_bbox("naip")
        == fresh.collection_bbox("naip")
        == pytest.approx(tuple(union_bbox(i["bbox"] for i in items)))
    )
