"""The Warehouse interface, the same cases on DuckDB and PostGIS."""

import datetime as dt
import decimal

import pyarrow as pa
import pytest
import shapely

from geo_platform.backends import warehouse
from geo_platform.lib.tables import GeometryColumn, TableSpec

pytestmark = pytest.mark.asset

SPEC = TableSpec(
    schema="vector",
    name="swap_test",
    columns=(("fid", pa.int64()), ("label", pa.string()), ("when", pa.timestamp("us", tz="UTC"))),
    primary_key=("fid",),
    geometry=GeometryColumn("geom", 4326),
)


def _batch(start: int, count: int) -> pa.RecordBatch:
    points = [shapely.to_wkb(shapely.Point(i % 90, i % 45)) for i in range(start, start + count)]
    return pa.RecordBatch.from_arrays(
        [
            pa.array(range(start, start + count), pa.int64()),
            pa.array([f'row "{i}", with comma\nand newline' for i in range(count)]),
            pa.array([None] * count, pa.timestamp("us", tz="UTC")),
            pa.array(points, pa.binary()),
        ],
        schema=SPEC.arrow_schema(),
    )


def test_a_failed_load_leaves_the_previous_table_whole(profile_settings):
    tables = warehouse(profile_settings)
    assert tables.replace_table(SPEC, [_batch(0, 1000), _batch(1000, 500)]) == 1500

    def failing():
        yield _batch(0, 1000)
        raise RuntimeError("the source broke half way")

    with pytest.raises(RuntimeError, match="half way"):
        tables.replace_table(SPEC, failing())
    assert tables.row_count("vector", "swap_test") == 1500
    assert [t for t in tables.tables("vector") if t.startswith("_stage")] == []
    check = tables.check_geometries("vector", "swap_test", "geom")
    assert (check.rows, check.invalid, check.srids) == (1500, 0, (4326,))

    # A duplicate primary key fails the load too, and the old table stays.
    with pytest.raises(Exception, match=r"(?i)duplicate|constraint"):
        tables.replace_table(SPEC, [_batch(0, 10), _batch(5, 10)])
    assert tables.row_count("vector", "swap_test") == 1500
    assert tables.replace_table(SPEC, [_batch(0, 3)]) == 3
    assert tables.row_count("vector", "swap_test") == 3
    assert [c for c, _ in tables.columns("vector", "swap_test")] == ["fid", "label", "when", "geom"]


def test_a_checked_load_reports_the_rows_it_swapped_in(profile_settings):
    """PostGIS checks the staged rows while it builds the indexes: the figures must be
    those of the table swapped in, and a failed load must still leave the old one."""
    tables = warehouse(profile_settings)
    bowtie = shapely.to_wkb(shapely.from_wkt("POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))"))
    batch = _batch(0, 100)
    invalid = batch.set_column(3, "geom", pa.array([bowtie] * 2 + [None] * 98, pa.binary()))
    rows, check = tables.replace_table_checked(SPEC, [invalid, _batch(100, 50)])
    assert rows == 150
    assert (check.rows, check.invalid, check.srids) == (150, 2, (4326,))
    assert check == tables.check_geometries("vector", "swap_test", "geom")
    with pytest.raises(Exception, match=r"(?i)duplicate|constraint"):
        tables.replace_table_checked(SPEC, [_batch(0, 10), _batch(5, 10)])
    assert tables.row_count("vector", "swap_test") == 150
    assert [t for t in tables.tables("vector") if t.startswith("_stage")] == []


def test_tables_without_geometry_for_other_domains(profile_settings):
    """What the H3 grids need: a table of plain columns with an index, in its own schema."""
    tables = warehouse(profile_settings)
    spec = TableSpec(
        schema="h3",
        name="grid_test",
        columns=(("cell", pa.int64()), ("resolution", pa.int32())),
        primary_key=("cell",),
        indexes=("resolution",),
    )
    batch = pa.RecordBatch.from_arrays(
        [pa.array([1, 2, 3], pa.int64()), pa.array([0, 0, 1], pa.int32())],
        schema=spec.arrow_schema(),
    )
    assert tables.replace_table(spec, [batch]) == 3
    assert tables.replace_table(spec, [batch]) == 3
    assert tables.row_count("h3", "grid_test") == 3
    # Other tests of the session may have H3 tables in the same database.
    assert "grid_test" in tables.tables("h3")


PARTITIONED = TableSpec(
    schema="vector",
    name="partitioned_test",
    columns=(("fid", pa.int64()), ("part", pa.int32())),
    primary_key=("fid",),
    geometry=GeometryColumn("geom", 4326),
    indexes=("part",),
)


def _part(part: int, fids: range) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.array(fids, pa.int64()),
            pa.array([part] * len(fids), pa.int32()),
            pa.array([shapely.to_wkb(shapely.Point(i % 90, part)) for i in fids], pa.binary()),
        ],
        schema=PARTITIONED.arrow_schema(),
    )


def test_replacing_a_partition_leaves_the_others(profile_settings):
    tables = warehouse(profile_settings)
    assert tables.replace_partition(PARTITIONED, {"part": 1}, [_part(1, range(0, 100))]) == 100
    assert tables.replace_partition(PARTITIONED, {"part": 2}, [_part(2, range(100, 150))]) == 50
    # Replaced with fewer rows, some of the same keys: the old rows of part 1 are gone.
    assert tables.replace_partition(PARTITIONED, {"part": 1}, [_part(1, range(50, 80))]) == 30
    assert tables.row_count("vector", "partitioned_test") == 80

    def failing():
        yield _part(2, range(100, 110))
        raise RuntimeError("the source broke half way")

    with pytest.raises(RuntimeError, match="half way"):
        tables.replace_partition(PARTITIONED, {"part": 2}, failing())
    with pytest.raises(ValueError, match="outside the partition"):
        tables.replace_partition(PARTITIONED, {"part": 2}, [_part(3, range(200, 210))])
    assert tables.row_count("vector", "partitioned_test") == 80
    assert [t for t in tables.tables("vector") if t.startswith("_stage")] == []
    rows = pa.Table.from_batches(
        list(tables.read_table("vector", "partitioned_test", ["fid", "part"], "geom"))
    )
    by_part = {
        p: sorted(
            f
            for f, q in zip(rows["fid"].to_pylist(), rows["part"].to_pylist(), strict=True)
            if q == p
        )
        for p in (1, 2)
    }
    assert by_part == {1: list(range(50, 80)), 2: list(range(100, 150))}
    assert shapely.from_wkb(rows["geom"][0].as_py()).geom_type == "Point"
    check = tables.check_geometries("vector", "partitioned_test", "geom")
    assert (check.rows, check.invalid, check.srids) == (80, 0, (4326,))
    with pytest.raises(LookupError):
        list(tables.read_table("vector", "no_such_table", ["fid"]))


EVERY_TYPE = TableSpec(
    schema="vector",
    name="types_test",
    columns=(
        ("fid", pa.int64()),
        ("flag", pa.bool_()),
        ("small", pa.int32()),
        ("single", pa.float32()),
        ("double", pa.float64()),
        ("label", pa.string()),
        ("raw", pa.binary()),
        ("day", pa.date32()),
        ("at", pa.timestamp("us", tz="UTC")),
        ("naive", pa.timestamp("us")),
        ("clock", pa.time64("us")),
    ),
    primary_key=("fid",),
    geometry=GeometryColumn("geom", 4326),
)
EVERY_TYPE_ROWS = {
    "fid": [1, 2, 3, 4],
    "flag": [True, None, False, True],
    "small": [1, None, -5, 2**31 - 1],
    "single": [1.5, None, -2.25, 3.0],
    "double": [1e300, None, -0.5, 2.0**-60],
    "label": ['é, "quoted"\nline', None, "", "back\\slash\ttab"],
    "raw": [b"\x00\xff", None, b"", b"\\x"],
    "day": [dt.date(1970, 1, 1), None, dt.date(1999, 12, 31), dt.date(2026, 12, 3)],
    "at": [dt.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC), None, None, None],
    "naive": [dt.datetime(1900, 5, 6, 7, 8, 9), None, dt.datetime(2000, 1, 1), None],
    "clock": [dt.time(23, 59, 59, 999999), None, dt.time(0), None],
}
EVERY_GEOMETRY = [
    shapely.to_wkb(shapely.Point(1, 2)),
    None,
    shapely.to_wkb(shapely.Point(1, 2, 3), flavor="iso"),
    # Big-endian WKB, as some sources write it.
    shapely.to_wkb(shapely.Polygon([(0, 0), (1, 0), (1, 1), (0, 0)]), byte_order=0),
]


def test_every_column_type_and_geometry_round_trips(profile_settings):
    """Values come back as they went in, nulls as nulls, through either warehouse's load
    (PostGIS: binary COPY; a numeric column falls back to CSV)."""
    tables = warehouse(profile_settings)
    batch = pa.RecordBatch.from_arrays(
        [
            *(pa.array(EVERY_TYPE_ROWS[name], kind) for name, kind in EVERY_TYPE.columns),
            pa.array(EVERY_GEOMETRY, pa.binary()),
        ],
        schema=EVERY_TYPE.arrow_schema(),
    )
    assert tables.replace_table(EVERY_TYPE, [batch.slice(0, 1), batch.slice(1)]) == 4
    names = [name for name, _ in EVERY_TYPE.columns]
    stored = pa.Table.from_batches(list(tables.read_table("vector", "types_test", names, "geom")))
    stored = stored.sort_by("fid")
    for name in names:
        assert stored[name].to_pylist() == EVERY_TYPE_ROWS[name], name
    geometries = [None if g is None else shapely.from_wkb(g) for g in stored["geom"].to_pylist()]
    assert [g.wkt if g is not None else None for g in geometries] == [
        "POINT (1 2)",
        None,
        "POINT Z (1 2 3)",
        "POLYGON ((0 0, 1 0, 1 1, 0 0))",
    ]
    check = tables.check_geometries("vector", "types_test", "geom")
    assert (check.rows, check.invalid, check.srids) == (4, 0, (4326,))

    exact = TableSpec(schema="vector", name="decimal_test", columns=(("n", pa.decimal128(20, 0)),))
    values = [decimal.Decimal(2**64 - 1), None]
    assert (
        tables.replace_table(
            exact,
            [pa.record_batch([pa.array(values, exact.columns[0][1])], schema=exact.arrow_schema())],
        )
        == 2
    )
    stored = pa.Table.from_batches(list(tables.read_table("vector", "decimal_test", ["n"])))
    assert sorted(stored["n"].to_pylist(), key=lambda v: v is None) == values
