"""One behavioural suite for both STAC catalogs: DuckDB (embedded) and pgSTAC.

pgSTAC is the reference: the parity test loads the same real items into both and
requires the same ids in the same order for every search. The pgSTAC tests run in a
scratch database of their own (created, migrated and dropped here); they fail, not
skip, when PostgreSQL is down: start it with `bash scripts/services.sh up`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from geo_platform.errors import ConfigurationError, InvalidInputError, TransientError
from geo_platform.lib.stac.bbox import union_bbox
from geo_platform.lib.stac.load import Rejection, load_ndjson
from geo_platform.lib.stac.loader import LoadResult
from geo_platform.lib.stac.search import parse_datetime_interval
from geo_platform.resources import pgstac_catalog
from geo_platform.resources.duckdb_catalog import DuckDBCatalog
from geo_platform.resources.pgstac_catalog import PgstacCatalog
from geo_platform.resources.stac_catalog import StacCatalog

from .conftest import conninfo

TEST_COLLECTION = "pgstac-test-collection"
DUPLICATED_ID = "pgstac-test-item-duplicated"


def _empty_pgstac(dsn: str) -> None:
    """No collections, hence no items: pgSTAC drops a collection's partitions with it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM pgstac.collections")


def _duckdb(tmp_path: Path) -> DuckDBCatalog:
    return DuckDBCatalog(path=str(tmp_path / "catalog.duckdb"))


def _pgstac(dsn: str) -> PgstacCatalog:
    _empty_pgstac(dsn)
    return PgstacCatalog(dsn=dsn)


@pytest.fixture(
    params=[
        pytest.param("duckdb", marks=pytest.mark.unit),
        pytest.param("pgstac", marks=pytest.mark.integration),
    ]
)
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> StacCatalog:
    """An empty catalog of each kind."""
    if request.param == "duckdb":
        return _duckdb(tmp_path)
    return _pgstac(request.getfixturevalue("pgstac_dsn"))


def _read_ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.open() if line.strip()]


@pytest.fixture(scope="session")
def test_collections(real_stac: Path) -> list[dict[str, Any]]:
    """pgSTAC's test collection, and a second one for its item with a duplicated id."""
    first = json.loads((real_stac / "pgstac-testdata-collections.json").read_text())
    second = dict(copy.deepcopy(first), id=f"{TEST_COLLECTION}2")
    return [first, second]


@pytest.fixture(scope="session")
def test_items(real_stac: Path) -> list[dict[str, Any]]:
    return _read_ndjson(real_stac / "pgstac-testdata-items.ndjson")


@pytest.fixture(scope="session")
def duplicated_items(real_stac: Path) -> list[dict[str, Any]]:
    """One id in two collections: a different item in each."""
    return _read_ndjson(real_stac / "pgstac-testdata-items-duplicate-ids.ndjson")


@pytest.fixture(scope="session")
def naip_items(real_stac: Path) -> list[dict[str, Any]]:
    return _read_ndjson(real_stac / "naip-items.ndjson")


@pytest.fixture(scope="session")
def naip_collection(real_stac: Path) -> dict[str, Any]:
    return json.loads((real_stac / "naip-collection.json").read_text())


def _with_title(item: dict[str, Any], title: str) -> dict[str, Any]:
    """A copy of ``item`` whose properties carry ``title``: the fixture stays as read."""
    changed = copy.deepcopy(item)
    changed["properties"]["title"] = title
    return changed


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def _title(catalog: StacCatalog, item: dict[str, Any]) -> str | None:
    stored = catalog.get_item(item["collection"], item["id"])
    assert stored is not None
    return stored["properties"].get("title")


def test_load_get_and_search_basics(catalog, test_collections, test_items):
    catalog.upsert_collection(test_collections[0])
    assert catalog.get_collection(TEST_COLLECTION)["id"] == TEST_COLLECTION
    assert catalog.get_collection("nothing-here") is None
    assert [c["id"] for c in catalog.list_collections()] == [TEST_COLLECTION]

    assert catalog.upsert_items(test_items) == 100
    assert catalog.get_item(TEST_COLLECTION, test_items[3]["id"]) == test_items[3]
    assert catalog.get_item(TEST_COLLECTION, "no-such-item") is None
    assert catalog.get_item("no-such-collection", test_items[3]["id"]) is None

    everything = catalog.search(limit=None)
    assert sorted(everything, key=lambda i: i["id"]) == sorted(test_items, key=lambda i: i["id"])
    # Newest first, as pgSTAC sorts.
    datetimes = [item["properties"]["datetime"] for item in everything]
    assert datetimes == sorted(datetimes, reverse=True)
    assert len(catalog.search(limit=7)) == 7
    assert len(catalog.search()) == 100
    assert catalog.search(collections=["nothing-here"]) == []
    assert catalog.search(ids=[]) == []
    wanted = [test_items[5]["id"], test_items[50]["id"]]
    assert sorted(_ids(catalog.search(ids=wanted))) == sorted(wanted)
    # Replacing the collection keeps its items.
    catalog.upsert_collection(dict(test_collections[0], title="renamed"))
    assert catalog.get_collection(TEST_COLLECTION)["title"] == "renamed"
    assert len(catalog.search(collections=[TEST_COLLECTION], limit=None)) == 100


def test_load_methods_on_the_duplicate_id_file(
    catalog, test_collections, test_items, duplicated_items
):
    for collection in test_collections:
        catalog.upsert_collection(collection)
    assert catalog.load_items(test_items, "insert") == LoadResult(loaded=100)
    # One id in two collections is two items.
    assert catalog.load_items(duplicated_items, "insert") == LoadResult(loaded=2)
    found = catalog.search(ids=[DUPLICATED_ID], limit=None)
    assert sorted(i["collection"] for i in found) == [TEST_COLLECTION, f"{TEST_COLLECTION}2"]

    with pytest.raises(InvalidInputError, match=f"{DUPLICATED_ID}.*already exists"):
        catalog.load_items([_with_title(i, "insert") for i in duplicated_items], "insert")
    assert [_title(catalog, i) for i in duplicated_items] == [None, None]

    result = catalog.load_items([_with_title(i, "ignore") for i in duplicated_items], "ignore")
    assert result == LoadResult(loaded=0, skipped=2)
    assert [_title(catalog, i) for i in duplicated_items] == [None, None]

    result = catalog.load_items([_with_title(i, "upsert") for i in duplicated_items], "upsert")
    assert result == LoadResult(loaded=2)
    assert [_title(catalog, i) for i in duplicated_items] == ["upsert", "upsert"]

    result = catalog.load_items([_with_title(i, "delsert") for i in duplicated_items], "delsert")
    assert result == LoadResult(loaded=2)
    assert [_title(catalog, i) for i in duplicated_items] == ["delsert", "delsert"]

    # ignore loads what is new and skips what is there.
    new = dict(copy.deepcopy(test_items[0]), id="brand-new")
    assert catalog.load_items([*test_items, new], "ignore") == LoadResult(loaded=1, skipped=100)
    assert len(catalog.search(limit=None)) == 103


def test_an_id_repeated_in_one_load_acts_as_consecutive_loads(
    catalog, test_collections, test_items
):
    catalog.upsert_collection(test_collections[0])
    first, second = _with_title(test_items[0], "first"), _with_title(test_items[0], "second")
    with pytest.raises(InvalidInputError, match="appears twice"):
        catalog.load_items([first, second], "insert")
    assert catalog.get_item(TEST_COLLECTION, first["id"]) is None
    assert catalog.load_items([first, second], "ignore") == LoadResult(loaded=1, skipped=1)
    assert _title(catalog, first) == "first"
    assert catalog.load_items([first, second], "upsert") == LoadResult(loaded=1, skipped=1)
    assert _title(catalog, first) == "second"
    assert catalog.load_items([second, first], "delsert") == LoadResult(loaded=1, skipped=1)
    assert _title(catalog, first) == "first"


def _bad_items(item: dict[str, Any]) -> dict[str, tuple[dict[str, Any], str]]:
    """Copies of a good item, each broken one way, with the reason it must be refused."""

    def broken(item_id: str, **changes: Any) -> dict[str, Any]:
        bad = copy.deepcopy(item)
        bad["id"] = item_id
        for key, value in changes.items():
            if key == "properties":
                bad["properties"] = {**bad["properties"], **value}
                bad["properties"] = {k: v for k, v in bad["properties"].items() if v is not ...}
            else:
                bad[key] = value
        return bad

    return {
        "no geometry": (broken("no-geometry", geometry=None), "has no geometry"),
        "no datetime": (
            broken("no-datetime", properties={"datetime": ...}),
            "neither datetime nor start_datetime",
        ),
        "bad datetime": (
            broken("bad-datetime", properties={"datetime": "last tuesday"}),
            "not an RFC 3339 timestamp",
        ),
        "backwards range": (
            broken(
                "backwards",
                properties={
                    "start_datetime": "2020-02-01T00:00:00Z",
                    "end_datetime": "2020-01-01T00:00:00Z",
                },
            ),
            "start_datetime after end_datetime",
        ),
        "unknown collection": (
            broken("stranger", collection="no-such-collection"),
            "unknown collection 'no-such-collection'",
        ),
        "broken geometry": (
            broken("broken-geometry", geometry={"type": "Polygon", "coordinates": "nope"}),
            "geometry",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "no geometry",
        "no datetime",
        "bad datetime",
        "backwards range",
        "unknown collection",
        "broken geometry",
    ],
)
def test_bad_items_are_refused_by_name_and_nothing_is_half_applied(
    catalog, test_collections, test_items, case
):
    catalog.upsert_collection(test_collections[0])
    catalog.load_items(test_items[:10])
    bad, reason = _bad_items(test_items[20])[case]
    good_new = test_items[11]
    replaced = _with_title(test_items[0], "must not stick")
    for batch in ([good_new, replaced, bad], (i for i in [good_new, replaced, bad])):
        with pytest.raises(InvalidInputError, match=f"{bad['id']}.*{reason}"):
            catalog.load_items(batch, "upsert")
        assert catalog.get_item(TEST_COLLECTION, good_new["id"]) is None
        assert _title(catalog, test_items[0]) is None
    assert len(catalog.search(limit=None)) == 10


@pytest.mark.parametrize("case", ["unknown collection", "broken geometry"])
def test_a_bad_batch_in_a_stream_keeps_the_batches_before_it_and_stops(
    catalog, test_collections, test_items, case
):
    # Batches of 2: each is written while the next is prepared, and the bad batch fails
    # in whichever half finds the problem (formatting for pgSTAC, the write for DuckDB).
    catalog = dataclasses.replace(catalog, batch_size=2)
    catalog.upsert_collection(test_collections[0])
    bad, reason = _bad_items(test_items[20])[case]
    stream = [*test_items[:5], bad, *test_items[6:10]]
    with pytest.raises(InvalidInputError, match=f"{bad['id']}.*{reason}"):
        catalog.load_items(iter(stream), "upsert")
    assert sorted(_ids(catalog.search(limit=None))) == sorted(_ids(test_items[:4]))


@pytest.mark.integration
def test_pgstac_upsert_replaces_an_item_another_writer_stored_meanwhile(
    pgstac_dsn, test_collections, test_items, monkeypatch
):
    catalog = _pgstac(pgstac_dsn)
    catalog.upsert_collection(test_collections[0])
    catalog.load_items(test_items[:3])
    # As if the items were stored right after the batch looked for them: the batch
    # starts as a plain COPY, meets the ids, and is loaded with its own method after all.
    monkeypatch.setattr(pgstac_catalog, "_existing_keys", lambda conn, rows: set())
    replaced = _with_title(test_items[1], "second")
    assert catalog.load_items([replaced, test_items[5]], "upsert") == LoadResult(loaded=2)
    assert _title(catalog, test_items[1]) == "second"
    assert len(catalog.search(limit=None)) == 4
    with pytest.raises(InvalidInputError, match=f"{test_items[2]['id']}.*already exists"):
        catalog.load_items([test_items[2]], "insert")


@pytest.mark.parametrize(
    ("search", "problem"),
    [
        ({"datetime": "last week"}, "not an RFC 3339"),
        ({"datetime": "../.."}, "open at both ends"),
        ({"datetime": "2021-01-01/2020-01-01"}, "ends before it starts"),
        ({"datetime": "P1D/2020-01-01T00:00:00Z"}, "durations"),
        ({"bbox": (10, 51, 11, 50)}, "S <= N"),
        ({"bbox": (190, 50, 9, 51)}, "crosses the antimeridian"),
        ({"query": {"gsd": {"like": "1%"}}}, "operator 'like'"),
        ({"query": {"gsd')) OR 1=1 --": {"eq": 1}}}, "property name"),
        ({"query": {"naip:year": {"in": "2011"}}}, "takes a non-empty list"),
        ({"query": {"assets.image.type": {"eq": "image/tiff"}}}, "properties, id and collection"),
        ({"query": {"properties": {"eq": "x"}}}, "properties, id and collection"),
        ({"query": {"gsd": {"lt": "one"}, "x": {"eq": 1}}}, None),
        ({"limit": -1}, "non-negative"),
    ],
)
def test_bad_search_parameters_are_refused_alike(catalog, test_collections, search, problem):
    catalog.upsert_collection(test_collections[0])
    if problem is None:
        # A text literal beside a number is read as text, as pgSTAC does: no error.
        assert catalog.search(**search) == []
        return
    with pytest.raises(InvalidInputError, match=problem):
        catalog.search(**search)


def test_load_ndjson_reports_loaded_skipped_and_rejected_lines(
    catalog, test_collections, test_items, tmp_path, real_stac
):
    bad = _bad_items(test_items[0])
    lines = [
        json.dumps(test_items[0]),
        "",
        '{"id": "truncated", "geometry": ',
        json.dumps(bad["no geometry"][0]),
        json.dumps(test_items[1]),
        json.dumps(bad["no datetime"][0]),
        json.dumps(bad["unknown collection"][0]),
        "[1, 2, 3]",
        json.dumps(test_items[2]),
    ]
    path = tmp_path / "items.ndjson"
    # With the byte order mark some Windows tools write.
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    collection_path = real_stac / "pgstac-testdata-collections.json"

    report = load_ndjson(catalog, path, batch_size=2, collection_path=collection_path)
    assert report.collection_id == TEST_COLLECTION
    assert (report.loaded, report.skipped) == (3, 0)
    assert [(r.line, r.item_id) for r in report.rejected] == [
        (3, None),
        (4, "no-geometry"),
        (6, "no-datetime"),
        (7, "stranger"),
        (8, None),
    ]
    reasons = [r.reason for r in report.rejected]
    assert reasons[0].startswith("malformed JSON")
    assert reasons[1:] == [
        "has no geometry",
        "has neither datetime nor start_datetime/end_datetime",
        "unknown collection 'no-such-collection'",
        "is not a JSON object",
    ]
    assert report.rejected[0] == Rejection(3, None, reasons[0])
    assert sorted(_ids(catalog.search(limit=None))) == sorted(_ids(test_items[:3]))

    again = load_ndjson(catalog, path, method="ignore")
    assert (again.loaded, again.skipped, len(again.rejected)) == (0, 3, 5)
    assert again.collection_id is None


def test_load_ndjson_insert_conflict_names_lines_and_keeps_earlier_batches(
    catalog, test_collections, test_items, tmp_path
):
    catalog.upsert_collection(test_collections[0])
    catalog.load_items([test_items[5]])
    path = tmp_path / "items.ndjson"
    path.write_text("".join(json.dumps(item) + "\n" for item in test_items[:10]))
    with pytest.raises(InvalidInputError, match=r"lines 5-8.*already exists.*4 earlier items"):
        load_ndjson(catalog, path, method="insert", batch_size=4)
    expected = [*test_items[:4], test_items[5]]
    assert sorted(_ids(catalog.search(limit=None))) == sorted(_ids(expected))


def test_load_ndjson_of_the_naip_items(catalog, naip_collection, naip_items, real_stac):
    report = load_ndjson(
        catalog,
        real_stac / "naip-items.ndjson",
        method="insert",
        collection_path=real_stac / "naip-collection.json",
    )
    assert (report.loaded, report.skipped, report.rejected) == (1000, 0, [])
    assert report.items_per_second > 0
    assert len(catalog.search(collections=["naip"], limit=None)) == 1000
    again = load_ndjson(catalog, real_stac / "naip-items.ndjson", method="ignore")
    assert (again.loaded, again.skipped) == (0, 1000)


def test_search_datetime_reads_dates_as_whole_days():
    day = parse_datetime_interval("2015-08-27")
    assert (day.start.isoformat(), day.end.isoformat(), day.end_inclusive) == (
        "2015-08-27T00:00:00+00:00",
        "2015-08-28T00:00:00+00:00",
        False,
    )
    closed = parse_datetime_interval("2015-08-27T00:00:00Z/2016-01-01")
    assert (closed.end.isoformat(), closed.end_inclusive) == ("2016-01-02T00:00:00+00:00", False)
    instant = parse_datetime_interval("2015-08-27T12:00:00+02:00")
    assert instant.start == instant.end and instant.end_inclusive
    assert parse_datetime_interval("../2015-08-27T00:00:00Z").start is None


# ---- parity: the same searches on both catalogs give the same ids in the same order


@pytest.fixture(scope="module")
def naip_pair(
    tmp_path_factory: pytest.TempPathFactory,
    pgstac_dsn: str,
    naip_collection: dict[str, Any],
    naip_items: list[dict[str, Any]],
) -> tuple[StacCatalog, StacCatalog]:
    catalogs = (_duckdb(tmp_path_factory.mktemp("parity")), _pgstac(pgstac_dsn))
    for catalog in catalogs:
        catalog.upsert_collection(naip_collection)
        assert catalog.load_items(naip_items, "insert") == LoadResult(loaded=1000)
    return catalogs


def _parity_searches(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A few dozen searches derived from the items, deterministically."""
    searches: list[dict[str, Any]] = [{}, {"limit": 1}, {"limit": None}]

    def extent(item: dict[str, Any]) -> tuple[float, float, float, float]:
        xs = [x for x, _ in item["geometry"]["coordinates"][0]]
        ys = [y for _, y in item["geometry"]["coordinates"][0]]
        return min(xs), min(ys), max(xs), max(ys)

    sample = items[::97]
    for n, item in enumerate(sample):
        west, south, east, north = extent(item)
        x, y = (west + east) / 2, (south + north) / 2
        half = (0.0005, 0.01, 0.04, 0.15, 0.6)[n % 5]
        searches.append({"bbox": (x - half, y - half, x + half, y + half), "limit": None})
    for item in sample[:4]:
        west, south, east, north = extent(item)
        # Touching the geometry's easternmost vertex only: intersects, in both.
        touch_x = max(x for x, _ in item["geometry"]["coordinates"][0])
        searches.append({"bbox": (touch_x, south, touch_x + 0.001, north), "limit": None})
        # Bboxes degenerate to a point and to a line, inside the item.
        x, y = (west + east) / 2, (south + north) / 2
        searches.append({"bbox": (x, y, x, y), "limit": None})
        searches.append({"bbox": (x, south, x, north), "limit": None})

    datetimes = sorted({item["properties"]["datetime"] for item in items})
    d = [datetimes[int(i * (len(datetimes) - 1) / 6)] for i in range(7)]
    day = d[3][:10]
    searches += [
        {"datetime": d[2], "limit": None},
        {"datetime": "2012-06-01T00:00:00Z", "limit": None},
        {"datetime": day, "limit": None},
        {"datetime": f"{d[1]}/{d[4]}", "limit": None},
        {"datetime": f"{d[1][:10]}/{d[4][:10]}", "limit": None},
        {"datetime": f"{day}/{day}", "limit": None},
        {"datetime": f"{d[5]}/..", "limit": None},
        {"datetime": f"../{d[2]}", "limit": None},
        {"datetime": f"../{d[2][:10]}", "limit": None},
        {"datetime": f"/{d[3]}", "limit": None},
        {"datetime": f"{d[4][:10]}/", "limit": 25},
        {"datetime": "2015-08-26T20:00:00-04:00/..", "limit": None},
        {"collections": ["naip"], "limit": None},
        {"collections": ["naip", "elsewhere"], "limit": 50},
        {"collections": ["elsewhere"]},
        {"ids": _ids(items[::111]), "limit": None},
        {"ids": _ids(items[::111]), "bbox": (-86.5, 31.0, -85.5, 32.0), "limit": None},
        {"query": {"naip:year": {"eq": "2019"}}, "limit": None},
        {"query": {"naip:year": "2021"}, "limit": None},
        {"query": {"naip:year": {"in": ["2011", "2013"]}}, "limit": None},
        {"query": {"naip:year": {"gt": "2015"}}, "limit": None},
        {"query": {"naip:year": {"lte": 2013}}, "limit": None},
        {"query": {"gsd": {"eq": 1}}, "limit": None},
        {"query": {"gsd": {"lt": 1}}, "limit": None},
        {"query": {"gsd": {"gte": 0.6, "lt": 1.0}}, "limit": None},
        {"query": {"gsd": {"in": [0.3, 1]}}, "limit": 30},
        {"query": {"gsd": {"neq": 0.6}}, "limit": None},
        {"query": {"properties.gsd": {"gt": 0.5}}, "limit": None},
        {"query": {"naip:state": {"eq": "al"}}, "limit": None},
        {"query": {"naip:state": {"neq": "al"}}, "limit": None},
        {"query": {"proj:epsg": {"eq": 26916}}, "limit": 10},
        {"query": {"proj:centroid": {"eq": "x"}}, "limit": None},
        {"query": {"id": {"eq": items[10]["id"]}}, "limit": None},
        {"query": {"id": {"gte": items[500]["id"]}}, "limit": None},
        {"query": {"datetime": {"gte": d[4]}}, "limit": None},
        {"query": {"collection": {"in": ["naip"]}}, "limit": 5},
        {
            "bbox": (-86.2, 30.9, -85.6, 31.4),
            "datetime": f"{d[1]}/{d[5]}",
            "query": {"gsd": {"lte": 0.6}, "naip:year": {"neq": "2017"}},
            "collections": ["naip"],
            "limit": None,
        },
        {"bbox": (-87.0, 30.0, -85.0, 32.0), "datetime": day, "limit": 3},
    ]
    return searches


@pytest.mark.integration
def test_duckdb_answers_every_search_exactly_as_pgstac(naip_pair, naip_items):
    duck, pg = naip_pair
    searches = _parity_searches(naip_items)
    assert len(searches) >= 40
    mismatches, sizes = [], []
    for search in searches:
        expected, got = _ids(pg.search(**search)), _ids(duck.search(**search))
        sizes.append(len(expected))
        if got != expected:
            mismatches.append(f"{search}: pgSTAC {len(expected)} ids, DuckDB {len(got)}")
    assert not mismatches, "\n".join(mismatches)
    # The searches discriminate: empty, partial and complete answers all occur.
    assert 0 in sizes and 1000 in sizes and len(set(sizes)) > 20


def _range_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items spanning time ranges (some with a null datetime) in two collections, with
    shared ids and starts, derived from real items: the sort's tiebreaks and the
    range overlap rules get exercised."""
    derived = []
    for n, item in enumerate(items[:80]):
        ranged = copy.deepcopy(item)
        ranged["collection"] = f"ranges-{'ab'[n % 2]}"
        ranged["id"] = f"range-{n // 2:03d}"
        start = ranged["properties"]["datetime"][:10]
        ranged["properties"]["start_datetime"] = f"{start}T00:00:00Z"
        ranged["properties"]["end_datetime"] = f"{start[:4]}-12-{10 + n % 20}T12:00:00Z"
        if n % 3 == 0:
            ranged["properties"]["datetime"] = None
        derived.append(ranged)
    return derived


@pytest.mark.integration
def test_range_items_sort_and_match_exactly_as_in_pgstac(
    tmp_path, pgstac_dsn, naip_collection, naip_items
):
    items = _range_items(naip_items)
    catalogs = (_duckdb(tmp_path), _pgstac(pgstac_dsn))
    for catalog in catalogs:
        for name in ("ranges-a", "ranges-b"):
            catalog.upsert_collection(dict(naip_collection, id=name))
        catalog.load_items(items, "insert")
    starts = sorted({i["properties"]["start_datetime"] for i in items})
    searches = [
        {"limit": None},
        {"limit": 5},
        {"datetime": starts[3], "limit": None},
        {"datetime": starts[3][:10], "limit": None},
        {"datetime": f"{starts[2][:4]}-12-15T00:00:00Z", "limit": None},
        {"datetime": f"{starts[2][:4]}-12-15", "limit": None},
        {"datetime": f"{starts[1]}/{starts[4]}", "limit": None},
        {"datetime": f"../{starts[2][:10]}", "limit": None},
        {"datetime": f"{starts[-1][:4]}-12-20T00:00:00Z/..", "limit": None},
        {"collections": ["ranges-b"], "limit": None},
        {"ids": ["range-001", "range-007"], "limit": None},
        {"query": {"datetime": {"lt": starts[4]}}, "limit": None},
        {"query": {"end_datetime": {"gte": f"{starts[3][:4]}-12-25T00:00:00Z"}}, "limit": None},
    ]
    duck, pg = catalogs
    for search in searches:
        expected = [(i["collection"], i["id"]) for i in pg.search(**search)]
        assert [(i["collection"], i["id"]) for i in duck.search(**search)] == expected, search


# ---- failures of the PostgreSQL connection: clear, and quick


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_wrong_password_is_a_configuration_error_at_once(pg_settings, pgstac_dsn):
    secret = "not-the-password-" + uuid.uuid4().hex[:6]
    dsn = make_conninfo(pgstac_dsn, password=secret)
    with pytest.raises(ConfigurationError, match="password authentication failed") as caught:
        PgstacCatalog(dsn=dsn).search()
    message = str(caught.value)
    assert f"{pg_settings.host}:{pg_settings.port}/geo_platform_test_" in message
    assert secret not in message and secret not in repr(PgstacCatalog(dsn=dsn))


@pytest.mark.integration
def test_closed_port_is_a_transient_error_after_quick_retries(pg_settings):
    port = _closed_port()
    catalog = PgstacCatalog(
        dsn=make_conninfo(host="127.0.0.1", port=port, user="u", password="p", dbname="geo")
    )
    with pytest.raises(TransientError) as caught:
        catalog.get_collection("naip")
    assert str(caught.value).startswith(
        f"cannot connect to PostgreSQL at 127.0.0.1:{port}/geo: connection refused"
    )


@pytest.mark.integration
def test_a_database_without_pgstac_and_an_unreadable_dsn_are_configuration_errors(pg_settings):
    without = PgstacCatalog(dsn=conninfo(pg_settings, "postgres"))
    with pytest.raises(ConfigurationError, match="run pypgstac migrate"):
        without.search()
    with pytest.raises(ConfigurationError, match="not a valid libpq") as caught:
        PgstacCatalog(dsn="postgresql//user:hunter2@nowhere").search()
    assert "hunter2" not in str(caught.value)


@pytest.mark.integration
def test_a_lock_held_too_long_is_retried_then_transient(pgstac_dsn, test_collections, test_items):
    catalog = PgstacCatalog(
        dsn=pgstac_dsn, lock_timeout_seconds=0.2, attempts=2, retry_wait_seconds=0.05
    )
    _empty_pgstac(pgstac_dsn)
    catalog.upsert_collection(test_collections[0])
    with psycopg.connect(pgstac_dsn) as blocker:
        blocker.execute("LOCK TABLE pgstac.collections IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(TransientError, match="lock timeout"):
            catalog.load_items(test_items[:5])
    assert catalog.load_items(test_items[:5]) == LoadResult(loaded=5)


def test_delete_item_removes_one_item_and_reports_whether_it_was_there(
    catalog, test_collections, test_items
):
    catalog.upsert_collection(test_collections[0])
    catalog.upsert_items(test_items[:3])
    gone = test_items[1]
    assert catalog.delete_item(TEST_COLLECTION, gone["id"]) is True
    assert catalog.get_item(TEST_COLLECTION, gone["id"]) is None
    assert catalog.delete_item(TEST_COLLECTION, gone["id"]) is False
    assert catalog.item_ids(TEST_COLLECTION) == {test_items[0]["id"], test_items[2]["id"]}
    assert catalog.item_ids("nothing-here") == set()
    assert sorted(_ids(catalog.search(limit=None))) == sorted(
        i["id"] for i in (test_items[0], test_items[2])
    )


@pytest.mark.integration
def test_pgstac_writes_to_one_collection_take_turns(pgstac_dsn, test_collections, test_items):
    """Loads into one collection wait for each other inside PostgreSQL (an advisory lock
    per collection), so runs of a collection can do their GDAL work side by side."""
    import threading

    catalog = _pgstac(pgstac_dsn)
    catalog.upsert_collection(test_collections[0])
    with psycopg.connect(pgstac_dsn, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [TEST_COLLECTION])
        writer = threading.Thread(target=catalog.upsert_items, args=(test_items[:5],))
        writer.start()
        writer.join(timeout=1.5)
        assert writer.is_alive(), "the write went ahead while another writer held the collection"
        assert catalog.get_item(TEST_COLLECTION, test_items[0]["id"]) is None
        holder.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [TEST_COLLECTION])
        writer.join(timeout=30)
    assert not writer.is_alive()
    assert len(catalog.search(limit=None)) == 5


def test_collection_aggregate_is_computed_from_the_items(catalog, naip_collection, naip_items):
    """What collection_summary reports: count, extent, EPSG codes and bytes per tier,
    the same on both catalogs and the same as a walk over the items."""
    from geo_platform.lib.stac.collection import TierAggregate

    items = []
    for n, original in enumerate(naip_items[:30]):
        item = copy.deepcopy(original)
        # Older items carry proj:epsg, projection v2 items proj:code: both count.
        item["properties"].pop("proj:code", None)
        item["properties"].pop("proj:epsg", None)
        if n % 2:
            item["properties"]["proj:code"] = "EPSG:26917"
        else:
            item["properties"]["proj:epsg"] = 26916
        item["assets"] = {
            "analysis": {"href": f"a{n}.tif", "file:size": 1000 + n,
                         "geo_platform:tier": "analysis", "geo_platform:storage_class": "hot"},
            "archive": {"href": f"z{n}.tif", "file:size": 500,
                        "geo_platform:tier": "archive", "geo_platform:storage_class": "cool"},
            "thumbnail": {"href": f"t{n}.png"},
        }  # fmt: skip
        items.append(item)
    catalog.upsert_collection(naip_collection)
    catalog.upsert_items(items)
    aggregate = catalog.collection_aggregate(naip_collection["id"])
    points = [c for i in items for ring in i["geometry"]["coordinates"] for c in ring]
    assert aggregate.items == 30
    assert aggregate.bbox == pytest.approx(
        (min(p[0] for p in points), min(p[1] for p in points),
         max(p[0] for p in points), max(p[1] for p in points))
    )  # fmt: skip
    times = sorted(i["properties"]["datetime"] for i in items)
    assert (aggregate.start, aggregate.end) == (times[0], times[-1])
    assert aggregate.epsg == (26916, 26917)
    assert aggregate.tiers == {
        "analysis": TierAggregate(30, sum(1000 + n for n in range(30)), "hot"),
        "archive": TierAggregate(30, 500 * 30, "cool"),
    }
    assert catalog.collection_aggregate("nothing-here").items == 0


@pytest.mark.parametrize(
    "bboxes",
    [
        # Apart, across the antimeridian, one crossing it, 3D, duplicates.
        [[170, 0, 175, 1], [-178, 0, -175, 1], [-10, 0, 10, 1], [20, -3, 5, 30, 2, 9],
         [20, 0, 30, 2], [20, 0, 30, 2]],
        [[179, -1, -179, 1], [-5, 0, 10, 0.5], [8, 0, 12, 1], [-7, -2, -6, 0]],
        [[-10, 0, 10, 1]],
    ],
)  # fmt: skip
def test_the_collection_extent_is_the_union_of_its_items_bboxes_computed_by_the_database(
    catalog, naip_collection, naip_items, bboxes
):
    """collection_summary's extent, aggregated in SQL, equals the union of the items' own
    bboxes recomputed from the items one by one."""
    items = []
    for n, bbox in enumerate(bboxes):
        item = copy.deepcopy(naip_items[n])
        item["bbox"] = bbox
        items.append(item)
    catalog.upsert_collection(naip_collection)
    catalog.upsert_items(items)
    stored = [catalog.get_item(naip_collection["id"], item["id"]) for item in items]
    aggregate = catalog.collection_aggregate(naip_collection["id"])
    assert aggregate.items == len(items)
    assert aggregate.bbox == pytest.approx(tuple(union_bbox(i["bbox"] for i in stored)))
    # What the item writer reads after each batch: the same extent, from columns.
    assert catalog.collection_bbox(naip_collection["id"]) == pytest.approx(aggregate.bbox)
    # Replaced items count with their new bbox only.
    moved = copy.deepcopy(stored[0])
    moved["bbox"] = [60.0, 60.0, 61.0, 61.0]
    catalog.upsert_items([moved])
    expected = union_bbox([moved["bbox"], *(i["bbox"] for i in stored[1:])])
    assert catalog.collection_bbox(naip_collection["id"]) == pytest.approx(tuple(expected))
    assert catalog.collection_bbox("nothing-here") is None
